// Host threads: /proc/PID/task/TID/stat for times and the last CPU, sched_*affinity for the rest.
#include "toolstack/host_threads.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace kdom::toolstack {

std::optional<ThreadInfo> thread_info(pid_t pid, pid_t tid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::string text;
  if (tid <= 0 || !std::getline(file, text)) return std::nullopt;
  const size_t paren = text.rfind(')');  // the thread's name may hold spaces
  if (paren == std::string::npos || paren + 2 > text.size()) return std::nullopt;
  std::istringstream fields(text.substr(paren + 2));
  std::vector<std::string> values;  // values[0] is field 3 (state)
  for (std::string value; fields >> value;) values.push_back(value);
  if (values.size() < 37) return std::nullopt;
  ThreadInfo info;
  info.state = values[0].empty() ? '?' : values[0][0];
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  info.cpu_time_s = static_cast<double>(std::stoull(values[11]) + std::stoull(values[12])) / ticks;
  info.cpu = std::stoi(values[36]);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(tid, sizeof(set), &set) == 0)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) info.affinity.push_back(cpu);
  return info;
}

void pin_thread(pid_t pid, pid_t tid, const std::vector<int>& cpus) {
  if (!thread_info(pid, tid)) throw Error("thread " + std::to_string(tid) + " is not one of process " + std::to_string(pid) + "'s");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  if (sched_setaffinity(tid, sizeof(set), &set) != 0) throw SystemError("sched_setaffinity of thread " + std::to_string(tid), errno);
}

std::vector<int> parse_cpu_list(const std::string& text, int nr_cpus) {
  std::vector<int> cpus;
  if (text == "all") {
    for (int cpu = 0; cpu < nr_cpus; ++cpu) cpus.push_back(cpu);
    return cpus;
  }
  auto number = [&](const std::string& word) {
    if (word.empty() || word.size() > 6 || word.find_first_not_of("0123456789") != std::string::npos)
      throw Error("bad CPU list '" + text.substr(0, 100) + "': '" + word.substr(0, 20) + "' is not a CPU number");
    const int cpu = std::stoi(word);
    if (cpu >= nr_cpus)
      throw Error("bad CPU list '" + text.substr(0, 100) + "': this host has CPUs 0-" + std::to_string(nr_cpus - 1));
    return cpu;
  };
  std::istringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    const size_t dash = item.find('-');
    const int first = number(item.substr(0, dash));
    const int last = dash == std::string::npos ? first : number(item.substr(dash + 1));
    if (last < first) throw Error("bad CPU list '" + text.substr(0, 100) + "': range " + item + " runs backwards");
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  if (cpus.empty()) throw Error("bad CPU list '" + text.substr(0, 100) + "': no CPU in it");
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string cpu_list_text(const std::vector<int>& cpus, int nr_cpus) {
  if (static_cast<int>(cpus.size()) == nr_cpus && !cpus.empty() && cpus.front() == 0 && cpus.back() == nr_cpus - 1)
    return "all";
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

uint64_t resident_bytes(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(file, line);) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    uint64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

}  // namespace kdom::toolstack
