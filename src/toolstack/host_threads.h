// What the host says about a VMM's threads (its vCPUs), and pinning them: CPU time, the CPU a
// thread last ran on and its affinity from /proc and sched_getaffinity, xl's CPU lists
// ("0-3,5", "all"), a process's resident memory. For vcpu-list, vcpu-pin, top and /metrics.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kdom::toolstack {

struct ThreadInfo {
  double cpu_time_s = 0;       // user + system
  int cpu = -1;                // the CPU it last ran on
  std::vector<int> affinity;   // the CPUs it may run on
  char state = '?';            // R running, S sleeping...
};

// Thread `tid` of process `pid`; none when it is not one of that process's threads.
std::optional<ThreadInfo> thread_info(pid_t pid, pid_t tid);
// Lets thread `tid` of process `pid` run on `cpus` only; throws Error when it is not one of
// that process's threads or the kernel refuses.
void pin_thread(pid_t pid, pid_t tid, const std::vector<int>& cpus);

// xl's CPU list: "all", or numbers and ranges separated by commas ("0-3,5"), each below
// `nr_cpus`. Throws Error naming what is wrong.
std::vector<int> parse_cpu_list(const std::string& text, int nr_cpus);
// The list as xl writes it: ranges where they run ("0-3,5"); "all" for every CPU of `nr_cpus`.
std::string cpu_list_text(const std::vector<int>& cpus, int nr_cpus);

// The process's resident memory (VmRSS), 0 when it is gone.
uint64_t resident_bytes(pid_t pid);

}  // namespace kdom::toolstack
