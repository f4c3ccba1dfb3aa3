// `kdom shutdown`: the power-button request over the control socket, and with --wait, watching
// the socket until the domain has ended.
#include "cli/shutdown_command.h"

#include <chrono>
#include <optional>
#include <thread>

#include "base/error.h"
#include "cli/control_client.h"

namespace kdom::cli {

namespace {

constexpr const char* kUsage = "usage: kdom shutdown --control PATH [--wait SECONDS]";
constexpr unsigned kMaxWaitSeconds = 86400;
constexpr auto kPollInterval = std::chrono::milliseconds(100);

unsigned parse_wait_seconds(const std::string& text) {
  const bool digits = !text.empty() && text.size() <= 5 && text.find_first_not_of("0123456789") == std::string::npos;
  const unsigned long seconds = digits ? std::stoul(text) : 0;
  if (seconds == 0 || seconds > kMaxWaitSeconds)
    throw Error("--wait must be a whole number of seconds from 1 to " + std::to_string(kMaxWaitSeconds) + ", not '" +
                text + "' (" + kUsage + ")");
  return static_cast<unsigned>(seconds);
}

}  // namespace

int shutdown_command(const std::vector<std::string>& args, std::ostream& out) {
  if (wants_help(args)) {
    out << kUsage << "\n";
    return 0;
  }
  std::vector<std::string> rest;
  std::optional<unsigned> wait_seconds;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--wait") {
      if (i + 1 == args.size()) throw Error("--wait needs a number of seconds (" + std::string(kUsage) + ")");
      wait_seconds = parse_wait_seconds(args[++i]);
    } else {
      rest.push_back(args[i]);
    }
  }
  const auto [path, words] = parse_control_arguments(rest, "kdom shutdown", kUsage);
  if (!words.empty()) throw Error("kdom shutdown: unexpected '" + words.front() + "' (" + kUsage + ")");
  control_request(path, {{"op", "power-button"}});
  if (!wait_seconds) {
    out << "pressed the guest's power button; kdom run exits once the guest has powered off\n";
    return 0;
  }
  // kdom removes its control socket when the domain has stopped (and one whose kdom was killed
  // refuses connections): either way the domain is gone.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*wait_seconds);
  while (control_socket_answers(path)) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw Error("the guest did not shut down within " + std::to_string(*wait_seconds) +
                  " s of its power button being pressed (its OS may not listen to the button); the domain is still running");
    std::this_thread::sleep_for(kPollInterval);
  }
  out << "the guest shut down\n";
  return 0;
}

}  // namespace kdom::cli
