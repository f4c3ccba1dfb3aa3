// Tests of kdomd's figures for people and programs: the Prometheus text (GET /metrics) from
// two domains' statistics, held against Prometheus' own linter (promtool, from Debian's
// prometheus package, which scripts/setup.sh installs); xl's CPU lists; a thread's figures and
// pinning, on this process's own thread.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "base/error.h"
#include "toolstack/host_threads.h"
#include "toolstack/metrics.h"

namespace kdom::toolstack {
namespace {

using nlohmann::json;

json two_domains() {
  json buckets = json::array();
  for (int i = 0; i < 12; ++i) buckets.push_back({{"le_us", i == 0 ? 10 : i * 100}, {"count", i == 2 ? 3 : 0}});
  buckets.push_back({{"le_us", nullptr}, {"count", 1}});
  return json::array(
      {{{"id", 3},
        {"name", "web \"prod\"\\1"},
        {"state", "running"},
        {"cpu_time_s", 12.5},
        {"memory_mib", 256},
        {"actual_mib", 192},
        {"resident_bytes", 1000},
        {"vcpus", {{{"vcpu", 0}, {"cpu_time_s", 1.25}, {"exits", {{"io", 7}, {"mmio", 2}}}}}},
        {"disks",
         {{{"id", "xvda"}, {"reads", 4}, {"writes", 2}, {"read_bytes", 16384}, {"write_bytes", 8192}, {"errors", 1},
           {"latency_buckets", buckets}, {"latency_sum_ns", 1500000}}}},
        {"nets", {{{"id", "vif0"}, {"rx_packets", 5}, {"rx_bytes", 500}, {"tx_packets", 6}, {"tx_bytes", 600}}}},
        {"balloon", {{"actual_mib", 64}}}},
       {{"id", 4}, {"name", "stopped"}, {"state", "shutdown"}, {"cpu_time_s", 0.0}, {"memory_mib", 128}, {"actual_mib", 128}}});
}

TEST(Metrics, PrometheusTextHasEveryFamilyWithLabels) {
  const std::string text = prometheus_metrics(two_domains());
  const std::string web = "domain=\"web \\\"prod\\\"\\\\1\",id=\"3\"";
  for (const std::string& line :
       {std::string("kdom_domains 2"), "kdom_domain_info{" + web + ",state=\"running\"} 1",
        "kdom_domain_cpu_seconds_total{" + web + "} 12.5", "kdom_domain_memory_actual_bytes{" + web + "} 201326592",
        "kdom_vcpu_exits_total{" + web + ",vcpu=\"0\",reason=\"io\"} 7",
        "kdom_block_read_bytes_total{" + web + ",device=\"xvda\"} 16384",
        "kdom_block_request_duration_seconds_bucket{" + web + ",device=\"xvda\",le=\"1e-05\"} 0",
        "kdom_block_request_duration_seconds_bucket{" + web + ",device=\"xvda\",le=\"0.0002\"} 3",
        "kdom_block_request_duration_seconds_bucket{" + web + ",device=\"xvda\",le=\"+Inf\"} 4",
        "kdom_block_request_duration_seconds_sum{" + web + ",device=\"xvda\"} 0.0015",
        "kdom_block_request_duration_seconds_count{" + web + ",device=\"xvda\"} 4",
        "kdom_net_transmit_bytes_total{" + web + ",device=\"vif0\"} 600",
        "kdom_net_receive_dropped_total{" + web + ",device=\"vif0\"} 0", "kdom_balloon_size_bytes{" + web + "} 67108864",
        std::string("kdom_domain_info{domain=\"stopped\",id=\"4\",state=\"shutdown\"} 1")})
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\nnot in:\n" << text;
}

TEST(Metrics, PromtoolFindsNothingWrong) {
  char path[] = "/tmp/kdom-metrics.XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = prometheus_metrics(two_domains());
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  const std::string command = std::string("promtool check metrics <") + path + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string said;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) said.append(buffer, n);
  const int status = ::pclose(pipe);
  ::unlink(path);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 127) << "promtool is missing: scripts/setup.sh installs Debian's prometheus package";
  EXPECT_EQ(WEXITSTATUS(status), 0) << said;
  EXPECT_EQ(said, "") << "promtool's remarks";
}

TEST(CpuList, XlsSyntaxBothWays) {
  EXPECT_EQ(parse_cpu_list("0-3,5", 8), (std::vector<int>{0, 1, 2, 3, 5}));
  EXPECT_EQ(parse_cpu_list("5,1,1-2", 8), (std::vector<int>{1, 2, 5}));
  EXPECT_EQ(parse_cpu_list("all", 3), (std::vector<int>{0, 1, 2}));
  for (const char* bad : {"", "8", "3-1", "a", "1,,2", "-1", "1-", "99999999"})
    EXPECT_THROW(parse_cpu_list(bad, 8), Error) << bad;
  EXPECT_EQ(cpu_list_text({0, 1, 2, 3, 5}, 8), "0-3,5");
  EXPECT_EQ(cpu_list_text({0, 1}, 2), "all");
  EXPECT_EQ(cpu_list_text({1}, 2), "1");
}

TEST(HostThreads, AThreadsFiguresAndItsPinning) {
  const pid_t pid = ::getpid(), tid = ::gettid();
  auto before = thread_info(pid, tid);
  ASSERT_TRUE(before.has_value());
  EXPECT_GE(before->cpu, 0);
  EXPECT_FALSE(before->affinity.empty());
  EXPECT_EQ(thread_info(pid, 999999999), std::nullopt);
  EXPECT_EQ(thread_info(pid, 1), std::nullopt) << "pid 1 is not one of this process's threads";
  EXPECT_THROW(pin_thread(pid, 1, {0}), Error);
  pin_thread(pid, tid, {before->affinity.front()});
  EXPECT_EQ(thread_info(pid, tid)->affinity, std::vector<int>{before->affinity.front()});
  pin_thread(pid, tid, before->affinity);
  EXPECT_EQ(thread_info(pid, tid)->affinity, before->affinity);
  EXPECT_GT(resident_bytes(pid), 0u);
}

}  // namespace
}  // namespace kdom::toolstack
