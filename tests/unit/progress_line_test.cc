// Tests of the progress line of a save or restore (cli/progress_line): the line's figures, the save run on its
// own thread while the line is redrawn and then cleared, a failed save's error passed on, a
// failing progress source not stopping the save, and progress read from a domain's event lines.
#include "cli/progress_line.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom::cli {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1024 * 1024;

TEST(Progress, TheLineSaysHowFarInPercentAndMiB) {
  EXPECT_EQ(progress_line("saving web", {460 * kMiB, 1024 * kMiB}), "saving web:  44% (460 of 1024 MiB)");
  EXPECT_EQ(progress_line("saving", {1024 * kMiB, 1024 * kMiB}), "saving: 100% (1024 of 1024 MiB)");
  EXPECT_EQ(progress_line("saving", {0, 0}), "saving: starting");
  // A figure past the total is shown as the total.
  EXPECT_EQ(progress_line("saving", {3 * kMiB, 2 * kMiB}), "saving: 100% (2 of 2 MiB)");
}

TEST(Progress, TheLineIsRedrawnWhileTheSaveRunsAndClearedAfter) {
  std::ostringstream terminal;
  std::atomic<int> polls{0};
  const json reply = run_showing_progress(
      terminal, "saving d",
      [] {
        std::this_thread::sleep_for(300ms);
        return json{{"bytes", 1}};
      },
      [&]() -> std::optional<Progress> {
        ++polls;
        return Progress{static_cast<uint64_t>(polls.load()) * kMiB, 64 * kMiB};
      },
      20ms);
  EXPECT_EQ(reply, (json{{"bytes", 1}}));
  EXPECT_GE(polls.load(), 2);
  const std::string drawn = terminal.str();
  EXPECT_NE(drawn.find("\r\033[Ksaving d:   1% (1 of 64 MiB)"), std::string::npos) << drawn;
  EXPECT_NE(drawn.find("(2 of 64 MiB)"), std::string::npos) << drawn;
  EXPECT_EQ(drawn.substr(drawn.size() - 4), "\r\033[K");  // nothing of the line is left
}

TEST(Progress, AQuickSaveDrawsNothing) {
  std::ostringstream terminal;
  const json reply = run_showing_progress(
      terminal, "saving", [] { return json{{"ok", true}}; },
      []() -> std::optional<Progress> { return Progress{1, 2}; }, 1s);
  EXPECT_EQ(reply, (json{{"ok", true}}));
  EXPECT_EQ(terminal.str(), "");
}

TEST(Progress, AFailedSavesErrorIsPassedOn) {
  std::ostringstream terminal;
  EXPECT_THROW(run_showing_progress(
                   terminal, "saving",
                   []() -> json {
                     std::this_thread::sleep_for(50ms);
                     throw Error("no space left on device");
                   },
                   []() -> std::optional<Progress> { return std::nullopt; }, 10ms),
               Error);
}

TEST(Progress, AFailingProgressSourceDoesNotStopTheSave) {
  std::ostringstream terminal;
  std::atomic<int> polls{0};
  const json reply = run_showing_progress(
      terminal, "saving",
      [] {
        std::this_thread::sleep_for(100ms);
        return json{{"bytes", 2}};
      },
      [&]() -> std::optional<Progress> {
        ++polls;
        throw Error("kdomd went away");
      },
      10ms);
  EXPECT_EQ(reply, (json{{"bytes", 2}}));
  EXPECT_EQ(polls.load(), 1);  // asked once, then left alone
  EXPECT_NE(terminal.str().find("saving: starting"), std::string::npos);  // the line goes on
}

// Before the first figures, the line says the request has started.
TEST(Progress, NothingKnownYetIsStarting) {
  std::ostringstream terminal;
  run_showing_progress(
      terminal, "restoring",
      [] {
        std::this_thread::sleep_for(100ms);
        return json::object();
      },
      []() -> std::optional<Progress> { return std::nullopt; }, 20ms);
  EXPECT_NE(terminal.str().find("\r\033[Krestoring: starting"), std::string::npos) << terminal.str();
}

// The domain's event lines, as they arrive over its control socket: other events, a line cut
// in two, malformed ones; the last save-progress counts.
TEST(Progress, EventsGiveTheLastSaveProgress) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  UniqueFd ours(fds[0]), vmm(fds[1]);
  SaveProgressEvents events(ours.get());
  EXPECT_EQ(events(), std::nullopt);  // nothing yet, and it did not wait
  const std::string lines =
      "{\"event\":\"paused\",\"time\":1}\n"
      "{\"event\":\"save-progress\",\"done_bytes\":1048576,\"total_bytes\":4194304}\n"
      "not json\n"
      "{\"event\":\"save-progress\",\"done_bytes\":-1,\"total_bytes\":4194304}\n"
      "{\"event\":\"save-progress\",\"done_bytes\":2097152,\"tot";
  ASSERT_EQ(write(vmm.get(), lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
  auto progress = events();
  ASSERT_TRUE(progress);
  EXPECT_EQ(progress->done_bytes, 1 * kMiB);
  EXPECT_EQ(progress->total_bytes, 4 * kMiB);
  const std::string rest = "al_bytes\":4194304}\n";
  ASSERT_EQ(write(vmm.get(), rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  progress = events();
  ASSERT_TRUE(progress);
  EXPECT_EQ(progress->done_bytes, 2 * kMiB);
  vmm.reset();  // the stream ends: nothing more, no error
  EXPECT_EQ(events(), std::nullopt);
}

}  // namespace
}  // namespace kdom::cli
