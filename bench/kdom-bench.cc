// kdom-bench: the measuring helper behind the scripts in bench/.
//
//   kdom-bench run [OPTIONS] -- COMMAND [ARGS...]
//       Runs COMMAND (repeatedly), timing each run from just before fork() to the first
//       output line containing a marker (--mark: required; --time: optional, reported
//       as "missing" when absent) and to the process's exit; can sample the process's
//       memory a while after the marker and then stop it. Prints one line per run and
//       a statistics line per figure. Exits 1 when a run does not behave as required
//       (wrong exit status, --mark never seen, timeout...). --capture NAME=PATTERN takes
//       a value from the first line matching PATTERN, plain text with one '*' where the
//       value is (a word: no blanks), e.g. "touched * pages"; one that matches no line
//       is reported as "missing", for the caller to judge.
//   kdom-bench stats [--label L] [--name N]
//       Reads numbers (whitespace separated) on stdin and prints their statistics.
//   kdom-bench tsc-khz
//       Measures the TSC rate against CLOCK_MONOTONIC_RAW (median of 5 x 100 ms).
//   kdom-bench pread FILE BYTES COUNT random|seq [SEED]
//       The host's own baseline for bench/virtio-blk.sh: COUNT pread()s of BYTES each
//       from FILE, one at a time, at random BYTES-aligned offsets (xorshift64, as in the
//       virtio-blk-bench probe) or in order (wrapping at the end); checks the block
//       numbers disk-pattern wrote and prints "ops=N bytes=B ns=T" (CLOCK_MONOTONIC
//       around the loop alone, after 200 ms of unmeasured warm-up reads).
//   kdom-bench disk-pattern FILE MIB
//       Writes a MIB MiB disk image whose every 4 KiB block starts with its block
//       number (64-bit little endian), the rest zero: what the virtio-blk-bench probe
//       checks each read against.
//
// Output lines are meant for the scripts (key=value, one figure per key):
//   <label> run <i>/<n>: status=<s> exit_ms=<t> mark_ms=<t> rss_kib=... <capture>=<v>
//   <label> stat <figure>: n=<n> median=<m> p90=<p> min=<a> max=<b> mean=<c>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "kdom-bench: error: %s\n", message.c_str());
  std::exit(1);
}

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

// ------------------------------------------------------------------ statistics

struct Stats {
  size_t n = 0;
  double median = 0, p90 = 0, min = 0, max = 0, mean = 0;
};

Stats compute_stats(std::vector<double> values) {
  Stats s;
  s.n = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  // Nearest-rank 90th percentile: the smallest value with at least 90% of them at or below it.
  size_t rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(n)));
  s.p90 = values[std::max<size_t>(rank, 1) - 1];
  s.min = values.front();
  s.max = values.back();
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(n);
  return s;
}

std::string fmt(double v) {
  char buf[64];
  if (std::fabs(v) >= 1e7 || v == std::floor(v))
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

void print_stats(const std::string& label, const std::string& name, const std::vector<double>& values) {
  if (values.empty()) return;
  Stats s = compute_stats(values);
  std::printf("%s stat %s: n=%zu median=%s p90=%s min=%s max=%s mean=%s\n", label.c_str(), name.c_str(), s.n,
              fmt(s.median).c_str(), fmt(s.p90).c_str(), fmt(s.min).c_str(), fmt(s.max).c_str(),
              fmt(s.mean).c_str());
}

std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
                 ? static_cast<double>(std::strtoull(text.c_str(), &end, 16))
                 : std::strtod(text.c_str(), &end);
  if (errno != 0 || end == nullptr || *end != '\0') return std::nullopt;
  return v;
}

// ------------------------------------------------------------------ /proc sampling

// Values (in KiB) of "Key:  N kB" lines.
std::map<std::string, double> read_kib_fields(const std::string& path) {
  std::map<std::string, double> fields;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream rest(line.substr(colon + 1));
    double value = 0;
    std::string unit;
    if (rest >> value >> unit && unit == "kB") fields[line.substr(0, colon)] = value;
  }
  return fields;
}

// Rss (KiB) of the mappings at least min_kib large (the guest's RAM, when min_kib is its size).
double big_mappings_rss_kib(int pid, double min_kib) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  double size_kib = 0, total = 0;
  while (std::getline(in, line)) {
    unsigned long long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &start, &end) == 2 && line.find(' ') != std::string::npos &&
        line.find('-') < line.find(' ')) {
      size_kib = static_cast<double>(end - start) / 1024.0;
      continue;
    }
    double rss = 0;
    if (std::sscanf(line.c_str(), "Rss: %lf kB", &rss) == 1 && size_kib >= min_kib) total += rss;
  }
  return total;
}

struct MemorySample {
  std::map<std::string, double> values;  // figure name -> KiB
};

MemorySample sample_memory(int pid, double ram_map_min_kib) {
  MemorySample sample;
  std::string base = "/proc/" + std::to_string(pid);
  auto rollup = read_kib_fields(base + "/smaps_rollup");
  auto status = read_kib_fields(base + "/status");
  if (rollup.empty() || status.empty()) die("cannot read " + base + "/smaps_rollup or status (process gone?)");
  sample.values["rss_kib"] = rollup["Rss"];
  sample.values["pss_kib"] = rollup["Pss"];
  sample.values["anon_kib"] = rollup["Anonymous"];
  sample.values["private_kib"] = rollup["Private_Clean"] + rollup["Private_Dirty"];
  sample.values["hwm_kib"] = status["VmHWM"];
  sample.values["vmrss_kib"] = status["VmRSS"];
  if (ram_map_min_kib > 0) {
    double ram = big_mappings_rss_kib(pid, ram_map_min_kib);
    sample.values["ram_maps_rss_kib"] = ram;
    sample.values["other_rss_kib"] = rollup["Rss"] - ram;
  }
  return sample;
}

// ------------------------------------------------------------------ run

// A value taken from output: the word at '*' in "before*after" (after may be empty: the
// word then ends at a blank or the line's end).
struct Capture {
  std::string name;
  std::string before;
  std::string after;
};

std::optional<std::string> match_capture(const Capture& c, const std::string& line) {
  for (size_t at = line.find(c.before); at != std::string::npos; at = line.find(c.before, at + 1)) {
    size_t start = at + c.before.size();
    size_t end = c.after.empty() ? line.find_first_of(" \t", start) : line.find(c.after, start);
    if (end == std::string::npos) {
      if (!c.after.empty()) continue;
      end = line.size();
    }
    std::string value = line.substr(start, end - start);
    if (!value.empty() && value.find_first_of(" \t") == std::string::npos) return value;
  }
  return std::nullopt;
}

struct TimedMarker {
  std::string name;
  std::string text;
};

struct RunOptions {
  std::string label = "run";
  int repeat = 1;
  int warmup = 0;
  std::optional<int> status;
  std::string mark;
  double after_mark_ms = -1;  // < 0: no sample, let the process end by itself
  double timeout_s = 60;
  double ram_map_min_kib = 0;
  std::string log_path;
  std::vector<Capture> captures;
  std::vector<TimedMarker> timed;
  bool print_stats = true;
  std::vector<std::string> command;
};

struct RunResult {
  int status = -1;
  bool stopped_by_us = false;
  double exit_ms = -1;
  double mark_ms = -1;
  MemorySample memory;
  std::map<std::string, std::string> captured;
  std::map<std::string, double> timed_ms;
  std::vector<std::string> tail;  // the last lines of output, for error messages
};

class Runner {
 public:
  explicit Runner(const RunOptions& options) : opt_(options) {
    if (!opt_.log_path.empty()) {
      log_ = std::fopen(opt_.log_path.c_str(), "a");
      if (!log_) die("cannot open " + opt_.log_path + ": " + std::strerror(errno));
    }
  }
  ~Runner() {
    if (log_) std::fclose(log_);
  }

  RunResult run_once(const std::string& title) {
    RunResult result;
    if (log_) std::fprintf(log_, "=== %s: %s\n", title.c_str(), joined_command().c_str());
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) die(std::string("pipe2: ") + std::strerror(errno));
    std::vector<char*> argv;
    for (const auto& a : opt_.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "kdom-bench: cannot run %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) die(std::string("pidfd_open: ") + std::strerror(errno));

    std::string partial[2];
    int fds[2] = {out[0], err[0]};
    bool open_fd[2] = {true, true};
    double deadline = t0 + opt_.timeout_s * 1000;
    double sample_at = -1, kill_at = -1, give_up_at = -1;
    bool exited = false, timed_out = false;

    auto handle_line = [&](const std::string& raw) {
      std::string line = raw;
      while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
      if (log_) std::fprintf(log_, "%s\n", line.c_str());
      result.tail.push_back(line);
      if (result.tail.size() > 25) result.tail.erase(result.tail.begin());
      if (!opt_.mark.empty() && result.mark_ms < 0 && line.find(opt_.mark) != std::string::npos) {
        result.mark_ms = now_ms() - t0;
        if (opt_.after_mark_ms >= 0) sample_at = now_ms() + opt_.after_mark_ms;
      }
      for (const auto& t : opt_.timed)
        if (!result.timed_ms.count(t.name) && line.find(t.text) != std::string::npos)
          result.timed_ms[t.name] = now_ms() - t0;
      for (const auto& c : opt_.captures) {
        if (result.captured.count(c.name)) continue;
        if (auto v = match_capture(c, line)) result.captured[c.name] = *v;
      }
    };
    auto read_fd = [&](int i) {
      char buf[4096];
      ssize_t n = read(fds[i], buf, sizeof(buf));
      if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          open_fd[i] = false;
          if (!partial[i].empty()) handle_line(partial[i]);
          partial[i].clear();
        }
        return;
      }
      partial[i].append(buf, static_cast<size_t>(n));
      size_t pos;
      while ((pos = partial[i].find('\n')) != std::string::npos) {
        handle_line(partial[i].substr(0, pos));
        partial[i].erase(0, pos + 1);
      }
    };

    while (!exited) {
      double now = now_ms();
      if (sample_at >= 0 && now >= sample_at) {
        result.memory = sample_memory(pid, opt_.ram_map_min_kib);
        sample_at = -1;
        kill(pid, SIGTERM);
        result.stopped_by_us = true;
        kill_at = now + 5000;
      }
      if (kill_at >= 0 && now >= kill_at) {
        kill(pid, SIGKILL);
        kill_at = -1;
      }
      if (now >= deadline && !timed_out) {
        timed_out = true;
        kill(pid, SIGKILL);
        give_up_at = now + 10000;
      }
      if (give_up_at >= 0 && now >= give_up_at) {
        // Killed but still there (stuck in the kernel): say so rather than wait for ever.
        if (log_) std::fflush(log_);
        fail(title, result,
             "no exit within " + fmt(opt_.timeout_s) + " s, and still there 10 s after SIGKILL (pid " +
                 std::to_string(pid) + ", left behind)");
      }
      double wake = deadline;
      if (give_up_at >= 0) wake = give_up_at;
      if (sample_at >= 0) wake = std::min(wake, sample_at);
      if (kill_at >= 0) wake = std::min(wake, kill_at);
      int timeout = timed_out ? 1000 : std::max(0, static_cast<int>(std::ceil(wake - now)));
      pollfd p[3] = {{pidfd, POLLIN, 0}, {open_fd[0] ? fds[0] : -1, POLLIN, 0}, {open_fd[1] ? fds[1] : -1, POLLIN, 0}};
      int r = poll(p, 3, timeout);
      if (r < 0 && errno != EINTR) die(std::string("poll: ") + std::strerror(errno));
      if (r <= 0) continue;
      // Output before the exit, so that a marker line printed just before exiting counts.
      for (int i = 0; i < 2; ++i)
        if (open_fd[i] && (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) read_fd(i);
      if (p[0].revents & POLLIN) {
        result.exit_ms = now_ms() - t0;
        exited = true;
      }
    }
    int wstatus = 0;
    if (waitpid(pid, &wstatus, 0) < 0) die(std::string("waitpid: ") + std::strerror(errno));
    close(pidfd);
    // Whatever is still buffered in the pipes (nothing else holds them normally).
    for (int i = 0; i < 2; ++i) {
      if (!open_fd[i]) continue;
      fcntl(fds[i], F_SETFL, O_NONBLOCK);
      while (open_fd[i]) {
        char buf[4096];
        ssize_t n = read(fds[i], buf, sizeof(buf));
        if (n > 0) {
          partial[i].append(buf, static_cast<size_t>(n));
          size_t pos;
          while ((pos = partial[i].find('\n')) != std::string::npos) {
            handle_line(partial[i].substr(0, pos));
            partial[i].erase(0, pos + 1);
          }
          continue;
        }
        if (!partial[i].empty()) handle_line(partial[i]);
        open_fd[i] = false;
      }
    }
    close(out[0]);
    close(err[0]);
    if (WIFEXITED(wstatus))
      result.status = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus))
      result.status = 128 + WTERMSIG(wstatus);
    if (log_) {
      std::fprintf(log_, "=== %s: status %d after %.3f ms%s\n", title.c_str(), result.status, result.exit_ms,
                   timed_out ? " (timed out, killed)" : "");
      std::fflush(log_);
    }
    if (timed_out) fail(title, result, "no exit within " + fmt(opt_.timeout_s) + " s (killed)");
    if (!opt_.mark.empty() && result.mark_ms < 0)
      fail(title, result, "no output line containing '" + opt_.mark + "' (exit status " +
                              std::to_string(result.status) + ")");
    if (!result.stopped_by_us && opt_.status && result.status != *opt_.status)
      fail(title, result,
           "exit status " + std::to_string(result.status) + ", expected " + std::to_string(*opt_.status));
    if (result.stopped_by_us && result.memory.values.empty())
      fail(title, result, "stopped before its memory was sampled");
    return result;
  }

 private:
  std::string joined_command() const {
    std::string s;
    for (const auto& a : opt_.command) s += (s.empty() ? "" : " ") + a;
    return s;
  }

  [[noreturn]] void fail(const std::string& title, const RunResult& result, const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "kdom-bench: error: %s: %s\n", title.c_str(), why.c_str());
    std::fprintf(stderr, "kdom-bench: command: %s\n", joined_command().c_str());
    std::fprintf(stderr, "kdom-bench: its last output lines:\n");
    for (const auto& l : result.tail) std::fprintf(stderr, "  | %s\n", l.c_str());
    std::exit(1);
  }

  const RunOptions& opt_;
  FILE* log_ = nullptr;
};

int cmd_run(int argc, char** argv) {
  RunOptions opt;
  int i = 0;
  auto value = [&](const char* name) -> std::string {
    if (i + 1 >= argc) die(std::string(name) + " needs a value");
    return argv[++i];
  };
  auto number = [&](const char* name) {
    std::string v = value(name);
    auto n = parse_number(v);
    if (!n) die(std::string(name) + ": not a number: " + v);
    return *n;
  };
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) opt.command.push_back(argv[i]);
      break;
    } else if (a == "--label") {
      opt.label = value("--label");
    } else if (a == "--repeat") {
      opt.repeat = static_cast<int>(number("--repeat"));
    } else if (a == "--warmup") {
      opt.warmup = static_cast<int>(number("--warmup"));
    } else if (a == "--status") {
      opt.status = static_cast<int>(number("--status"));
    } else if (a == "--mark") {
      opt.mark = value("--mark");
    } else if (a == "--sample-after-mark") {
      opt.after_mark_ms = number("--sample-after-mark");
    } else if (a == "--timeout") {
      opt.timeout_s = number("--timeout");
    } else if (a == "--ram-map-min-kib") {
      opt.ram_map_min_kib = number("--ram-map-min-kib");
    } else if (a == "--log") {
      opt.log_path = value("--log");
    } else if (a == "--no-stats") {
      opt.print_stats = false;
    } else if (a == "--time") {
      std::string spec = value("--time");
      auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) die("--time wants NAME=TEXT, got " + spec);
      opt.timed.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
    } else if (a == "--capture") {
      std::string spec = value("--capture");
      auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) die("--capture wants NAME=PATTERN, got " + spec);
      std::string pattern = spec.substr(eq + 1);
      auto star = pattern.find('*');
      if (star == std::string::npos || pattern.find('*', star + 1) != std::string::npos || star == 0)
        die("--capture " + spec + ": the pattern needs text and then exactly one '*'");
      opt.captures.push_back({spec.substr(0, eq), pattern.substr(0, star), pattern.substr(star + 1)});
    } else {
      die("run: unknown option " + a);
    }
  }
  if (opt.command.empty()) die("run: no command (give it after --)");
  if (opt.repeat < 1 || opt.warmup < 0) die("run: --repeat must be >= 1, --warmup >= 0");
  if (opt.after_mark_ms >= 0 && opt.mark.empty()) die("run: --sample-after-mark needs --mark");

  Runner runner(opt);
  for (int w = 0; w < opt.warmup; ++w) runner.run_once(opt.label + " warm-up " + std::to_string(w + 1));

  std::vector<double> exit_ms, mark_ms;
  std::map<std::string, std::vector<double>> figures;  // memory and numeric captures
  std::vector<std::string> figure_order;
  auto add_figure = [&](const std::string& name, double v) {
    if (!figures.count(name)) figure_order.push_back(name);
    figures[name].push_back(v);
  };
  for (int r = 0; r < opt.repeat; ++r) {
    std::string title = opt.label + " run " + std::to_string(r + 1) + "/" + std::to_string(opt.repeat);
    RunResult res = runner.run_once(title);
    std::string line = title + ": status=" + std::to_string(res.status) + (res.stopped_by_us ? " stopped=1" : "");
    if (!res.stopped_by_us) {
      line += " exit_ms=" + fmt(res.exit_ms);
      exit_ms.push_back(res.exit_ms);
    } else {
      line += " stop_ms=" + fmt(res.exit_ms);
    }
    if (res.mark_ms >= 0) {
      line += " mark_ms=" + fmt(res.mark_ms);
      mark_ms.push_back(res.mark_ms);
    }
    for (const auto& [name, v] : res.memory.values) {
      line += " " + name + "=" + fmt(v);
      add_figure(name, v);
    }
    for (const auto& t : opt.timed) {
      auto it = res.timed_ms.find(t.name);
      if (it == res.timed_ms.end()) {
        line += " " + t.name + "_ms=missing";
      } else {
        line += " " + t.name + "_ms=" + fmt(it->second);
        add_figure(t.name + "_ms", it->second);
      }
    }
    for (const auto& c : opt.captures) {
      auto it = res.captured.find(c.name);
      const std::string v = it == res.captured.end() ? "missing" : it->second;
      line += " " + c.name + "=" + v;
      if (auto n = parse_number(v)) add_figure(c.name, *n);
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  if (opt.print_stats) {
    print_stats(opt.label, "exit_ms", exit_ms);
    print_stats(opt.label, "mark_ms", mark_ms);
    for (const auto& name : figure_order) print_stats(opt.label, name, figures[name]);
  }
  return 0;
}

int cmd_stats(int argc, char** argv) {
  std::string label = "stats", name = "value";
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--label" && i + 1 < argc)
      label = argv[++i];
    else if (a == "--name" && i + 1 < argc)
      name = argv[++i];
    else
      die("stats: unknown option " + a);
  }
  std::vector<double> values;
  std::string word;
  while (std::cin >> word) {
    auto v = parse_number(word);
    if (!v) die("stats: not a number: " + word);
    values.push_back(*v);
  }
  if (values.empty()) die("stats: no numbers on stdin");
  print_stats(label, name, values);
  return 0;
}

double raw_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

int cmd_tsc_khz() {
  std::vector<double> rates;
  for (int i = 0; i < 5; ++i) {
    double n0 = raw_ns();
    unsigned long long c0 = __rdtsc();
    timespec pause{0, 100 * 1000 * 1000};
    nanosleep(&pause, nullptr);
    double n1 = raw_ns();
    unsigned long long c1 = __rdtsc();
    rates.push_back(static_cast<double>(c1 - c0) / (n1 - n0) * 1e6);
  }
  std::printf("%.0f\n", compute_stats(rates).median);
  return 0;
}

// Closes a file descriptor when it goes out of scope.
class FileFd {
 public:
  explicit FileFd(int fd) : fd_(fd) {}
  ~FileFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileFd(const FileFd&) = delete;
  FileFd& operator=(const FileFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int cmd_disk_pattern(int argc, char** argv) {
  if (argc != 2) die("disk-pattern: wants FILE MIB");
  const std::string path = argv[0];
  const auto mib = parse_number(argv[1]);
  if (!mib || *mib < 1 || *mib > 65536 || *mib != std::floor(*mib)) die("disk-pattern: MIB must be 1..65536");
  const FileFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (file.get() < 0) die("disk-pattern: cannot create " + path + ": " + std::strerror(errno));
  constexpr size_t kBlock = 4096, kChunkBlocks = 256;
  std::vector<unsigned char> chunk(kBlock * kChunkBlocks, 0);
  const uint64_t blocks = static_cast<uint64_t>(*mib) * 256;
  bool ok = true;
  for (uint64_t b = 0; b < blocks && ok; b += kChunkBlocks) {
    for (size_t i = 0; i < kChunkBlocks; ++i) {
      const uint64_t number = b + i;
      std::memcpy(&chunk[i * kBlock], &number, sizeof number);  // x86: little endian
    }
    size_t done = 0;
    while (done < chunk.size()) {
      const ssize_t n = ::write(file.get(), chunk.data() + done, chunk.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = false;
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (!ok) die("disk-pattern: writing " + path + ": " + std::strerror(errno));
  return 0;
}

int cmd_pread(int argc, char** argv) {
  if (argc != 4 && argc != 5) die("pread: wants FILE BYTES COUNT random|seq [SEED]");
  const std::string path = argv[0], order = argv[3];
  const auto bytes = parse_number(argv[1]);
  const auto count = parse_number(argv[2]);
  if (!bytes || *bytes < 4096 || *bytes > (1 << 24) || static_cast<uint64_t>(*bytes) % 4096 != 0)
    die("pread: BYTES must be a multiple of 4096 up to 16 MiB");
  if (!count || *count < 1) die("pread: COUNT must be positive");
  if (order != "random" && order != "seq") die("pread: order must be random or seq");
  uint64_t rng = argc == 5 ? static_cast<uint64_t>(parse_number(argv[4]).value_or(1)) | 1 : 1;
  // O_NOATIME where allowed, as kdom opens disk images: the host pays no access-time check
  // that kdom skips.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const FileFd file(fd);
  if (file.get() < 0) die("pread: cannot open " + path + ": " + std::strerror(errno));
  const off_t end = ::lseek(file.get(), 0, SEEK_END);
  const uint64_t size = static_cast<uint64_t>(*bytes), ops = static_cast<uint64_t>(*count);
  const uint64_t slots = end > 0 ? static_cast<uint64_t>(end) / size : 0;
  if (slots == 0) die("pread: " + path + " is smaller than one read");
  std::vector<unsigned char> buffer(size);
  uint64_t next = 0, bad = 0;
  // One pass of `count` reads; returns its duration in ms.
  const auto pass = [&](uint64_t count) {
    const double start = now_ms();
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t slot;
      if (order == "random") {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        slot = rng % slots;
      } else {
        slot = next;
        next = next + 1 == slots ? 0 : next + 1;
      }
      const ssize_t n = ::pread(file.get(), buffer.data(), size, static_cast<off_t>(slot * size));
      if (n != static_cast<ssize_t>(size)) die("pread: short read or error at " + std::to_string(slot * size));
      for (uint64_t off = 0; off < size; off += 4096) {
        uint64_t number;
        std::memcpy(&number, &buffer[off], sizeof number);
        bad += number != (slot * size + off) / 4096;
      }
    }
    return now_ms() - start;
  };
  // Warm up for 200 ms first, unmeasured: on our VMs the first ~100 ms of work after a
  // pause run 2-5x slower. The measured pass then starts where a fresh one would.
  const uint64_t seed = rng;
  for (const double until = now_ms() + 200; now_ms() < until;) pass(std::min<uint64_t>(ops, 256));
  rng = seed;
  next = 0;
  const double elapsed = pass(ops);
  if (bad) die("pread: " + std::to_string(bad) + " blocks lack their number (not a disk-pattern image?)");
  std::printf("ops=%llu bytes=%llu ns=%.0f\n", static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(ops * size), elapsed * 1e6);
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: kdom-bench run [--label L] [--repeat N] [--warmup N] [--status S] [--mark TEXT]\n"
               "                      [--sample-after-mark MS] [--ram-map-min-kib K] [--timeout S]\n"
               "                      [--time NAME=TEXT]... [--capture NAME=PATTERN]... [--no-stats]\n"
               "                      [--log FILE] -- COMMAND [ARGS...]\n"
               "       kdom-bench stats [--label L] [--name N] < numbers\n"
               "       kdom-bench tsc-khz\n"
               "       kdom-bench pread FILE BYTES COUNT random|seq [SEED]\n"
               "       kdom-bench disk-pattern FILE MIB\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string sub = argv[1];
  if (sub == "run") return cmd_run(argc - 2, argv + 2);
  if (sub == "stats") return cmd_stats(argc - 2, argv + 2);
  if (sub == "tsc-khz") return cmd_tsc_khz();
  if (sub == "pread") return cmd_pread(argc - 2, argv + 2);
  if (sub == "disk-pattern") return cmd_disk_pattern(argc - 2, argv + 2);
  usage();
}
