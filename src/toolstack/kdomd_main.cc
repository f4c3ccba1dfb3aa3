// kdomd: the daemon that manages this host's domains. It serves the HTTP API on a Unix socket
// (and on TCP with a token), keeps the registry, and supervises one VMM process per domain.
// Without --foreground it goes into the background once it is listening, so `kdomd` returns
// when the daemon is ready. SIGTERM stops the daemon and leaves every domain running; the next
// kdomd finds them again.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "toolstack/api.h"
#include "toolstack/http_server.h"
#include "toolstack/migration_listener.h"
#include "toolstack/registry.h"
#include "toolstack/store_persistence.h"
#include "toolstack/supervisor.h"

namespace {

struct Options {
  bool foreground = false;
  std::string socket = "/run/kdom/kdomd.sock";
  std::string state_dir = "/var/lib/kdom";
  std::string run_dir = "/run/kdom";
  std::string log_dir = "/var/log/kdom";
  std::string listen;
  std::string migration_listen;
  std::string token_file;
  std::string vmm;
};

std::string read_token(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw kdom::Error("cannot read the token file '" + path + "'");
  std::string token;
  std::getline(file, token);
  token.erase(std::remove_if(token.begin(), token.end(), [](unsigned char c) { return std::isspace(c); }), token.end());
  if (token.size() < 16) throw kdom::Error("the token in '" + path + "' is shorter than 16 characters");
  return token;
}

std::string default_vmm() {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "kdom").string();
}

// Runs the daemon until SIGTERM/SIGINT; "ready" is written to `ready_fd` (then closed) once it
// serves requests.
int serve(const Options& options, int ready_fd) {
  using namespace kdom::toolstack;
  std::filesystem::create_directories(options.run_dir);
  const std::string lock_path = options.run_dir + "/kdomd.lock";
  kdom::UniqueFd lock(kdom::check_syscall(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600), "open " + lock_path));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) throw kdom::Error("another kdomd is running (it holds " + lock_path + ")");

  std::string token;
  if (!options.listen.empty() && options.token_file.empty())
    throw kdom::Error("--listen needs --token-file: kdomd never serves TCP without a token");
  if (!options.migration_listen.empty() && options.token_file.empty())
    throw kdom::Error("--migration-listen needs --token-file: kdomd accepts no migration without a token");
  if (!options.token_file.empty()) token = read_token(options.token_file);
  Registry registry(options.state_dir);
  DaemonPaths paths{options.run_dir, options.log_dir, options.vmm.empty() ? default_vmm() : options.vmm};
  if (::access(paths.vmm_binary.c_str(), X_OK) != 0) throw kdom::Error("the VMM binary '" + paths.vmm_binary + "' is not executable (--vmm PATH)");
  Store store(store_nodes_from(registry), store_persistence_in(registry));
  Supervisor supervisor(registry, store, paths);
  supervisor.recover();
  supervisor.set_migration_token(token);
  Api api(supervisor, store);
  HttpServer server([&api](const HttpRequest& request) { return api.handle(request); });
  const group* kdom_group = ::getgrnam("kdom");
  std::filesystem::create_directories(std::filesystem::path(options.socket).parent_path());
  server.serve(listen_unix(options.socket, kdom_group ? 0660 : 0600, kdom_group ? static_cast<int>(kdom_group->gr_gid) : -1), "");
  if (!options.listen.empty()) server.serve(listen_tcp(options.listen), token);
  std::unique_ptr<MigrationListener> migrations;
  if (!options.migration_listen.empty())
    migrations = std::make_unique<MigrationListener>(listen_tcp(options.migration_listen, "--migration-listen"), [&supervisor, token](kdom::UniqueFd connection) {
      supervisor.receive_migration(std::move(connection), token);
    });
  kdom::log_line("kdomd " KDOM_VERSION " listening on " + options.socket +
                 (options.listen.empty() ? "" : " and " + options.listen + " (token required)") +
                 (options.migration_listen.empty() ? "" : "; migrations on " + options.migration_listen) + "; " +
                 std::to_string(supervisor.domain_count()) + " domain(s)");
  sd_notify(0, "READY=1");  // under systemd (Type=notify); nothing otherwise
  if (ready_fd >= 0) {
    (void)!::write(ready_fd, "ready\n", 6);
    ::close(ready_fd);
  }

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  int signal_number = 0;
  sigwait(&stop, &signal_number);
  kdom::log_line(std::string("kdomd: stopped by SIG") + sigabbrev_np(signal_number) + "; " +
                 std::to_string(supervisor.domain_count()) + " domain(s) keep running");
  sd_notify(0, "STOPPING=1");
  supervisor.events().close();  // event streams and watches end now, not when their clients go
  store.close_watches();
  server.stop();
  ::unlink(options.socket.c_str());
  std::cerr.flush();
  // Connection and settling threads may still run; they must not outlive what they use.
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // Blocked in every thread: sigwait takes them. (Child VMMs get a clear mask before exec.)
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  Options options;
  CLI::App app{"kdomd: the daemon that manages this host's domains (HTTP API on a Unix socket).", "kdomd"};
  app.add_flag("--foreground", options.foreground, "stay in the foreground, logging to stderr (tests, containers, systemd)");
  app.add_option("--socket", options.socket, "the API's Unix socket (default /run/kdom/kdomd.sock)");
  app.add_option("--state-dir", options.state_dir, "where the registry lives (default /var/lib/kdom)");
  app.add_option("--run-dir", options.run_dir, "the domains' sockets and run-time files (default /run/kdom)");
  app.add_option("--log-dir", options.log_dir, "the domains' console logs (default /var/log/kdom)");
  app.add_option("--listen", options.listen, "also serve the API on TCP ADDRESS:PORT (needs --token-file)");
  app.add_option("--migration-listen", options.migration_listen,
                 "accept live migrations (kdom migrate) on TCP ADDRESS:PORT (needs --token-file)");
  app.add_option("--token-file", options.token_file,
                 "file holding the token TCP API clients and incoming migrations must send (and outgoing "
                 "migrations send when they are given none)");
  app.add_option("--vmm", options.vmm, "the kdom binary that runs each domain (default: kdom beside kdomd)");
  app.add_flag_function("--version", [](int64_t) {
    std::cout << "kdomd " KDOM_VERSION "\n";
    throw CLI::Success();
  }, "print the version");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  try {
    if (options.foreground) return serve(options, -1);
    // In the background: the parent returns once the child listens, or says why it could not.
    int pipe_fds[2];
    kdom::check_syscall(::pipe2(pipe_fds, O_CLOEXEC), "pipe2");
    kdom::UniqueFd reader(pipe_fds[0]), writer(pipe_fds[1]);
    const pid_t child = kdom::check_syscall(::fork(), "fork");
    if (child > 0) {
      writer.reset();
      std::string said;
      char buffer[512];
      for (ssize_t n; (n = ::read(reader.get(), buffer, sizeof(buffer))) > 0;) said.append(buffer, static_cast<size_t>(n));
      if (said == "ready\n") {
        std::cerr << "kdomd: running in the background (pid " << child << "), listening on " << options.socket
                  << "; its log: " << options.log_dir << "/kdomd.log\n";
        return 0;
      }
      std::cerr << (said.empty() ? "kdomd: error: the daemon ended before it was ready (see " + options.log_dir + "/kdomd.log)\n" : said);
      return 1;
    }
    reader.reset();
    ::setsid();
    std::filesystem::create_directories(options.log_dir);
    const std::string log = options.log_dir + "/kdomd.log";
    kdom::UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    kdom::UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    const int error_pipe = writer.get();
    try {
      ::dup2(null_fd.get(), 0);
      ::dup2(log_fd.valid() ? log_fd.get() : null_fd.get(), 1);
      ::dup2(log_fd.valid() ? log_fd.get() : null_fd.get(), 2);
      return serve(options, writer.release());
    } catch (const std::exception& error) {
      const std::string line = std::string("kdomd: error: ") + error.what() + "\n";
      (void)!::write(error_pipe, line.data(), line.size());
      kdom::log_line(std::string("error: ") + error.what());
      return 1;
    }
  } catch (const std::exception& error) {
    std::cerr << "kdomd: error: " << error.what() << "\n";
    return 1;
  }
}
