// `kdom balloon`: a client of the control socket.
#include "cli/balloon_command.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom::cli {

namespace {

constexpr const char* kUsage = "usage: kdom balloon --control PATH set MIB | kdom balloon --control PATH stats";
constexpr int kReplyTimeoutSeconds = 10;

uint64_t parse_mib(const std::string& text) {
  if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos)
    throw Error("balloon target must be a whole number of MiB, not '" + text + "'");
  return std::stoull(text);
}

std::string number_text(const nlohmann::json& value) {
  if (value.is_number_float()) {
    std::ostringstream out;
    out << std::fixed << std::setprecision(1) << value.get<double>();
    return out.str();
  }
  return value.dump();
}

}  // namespace

nlohmann::json control_request(const std::string& path, const nlohmann::json& request) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    throw Error("control socket path '" + path + "' is empty or too long");
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  timeval timeout{kReplyTimeoutSeconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    if (error == ENOENT) throw Error("no control socket at '" + path + "' (start the domain with kdom run --control PATH)");
    if (error == ECONNREFUSED) throw Error("nothing listens on control socket '" + path + "' (has its kdom ended?)");
    throw SystemError("cannot connect to control socket '" + path + "'", error);
  }
  const std::string line = request.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SystemError("cannot send to control socket '" + path + "'", errno);
    sent += static_cast<size_t>(n);
  }
  std::string reply;
  char buffer[4096];
  while (reply.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      throw Error("no reply on control socket '" + path + "' within " + std::to_string(kReplyTimeoutSeconds) + " s");
    if (n < 0) throw SystemError("cannot read from control socket '" + path + "'", errno);
    if (n == 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  reply = reply.substr(0, reply.find('\n'));
  nlohmann::json parsed = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object())
    throw Error("control socket '" + path + "' gave no valid reply (got '" + reply.substr(0, 80) + "')");
  if (parsed.value("ok", false) != true) {
    auto error = parsed.find("error");
    throw Error(error != parsed.end() && error->is_string() ? error->get<std::string>()
                                                             : "the request failed: " + reply.substr(0, 200));
  }
  return parsed;
}

int balloon_command(const std::vector<std::string>& args, std::ostream& out) {
  std::string path;
  std::vector<std::string> words;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      out << kUsage << "\n";
      return 0;
    }
    if (args[i] == "--control") {
      if (i + 1 == args.size()) throw Error("--control needs a path (" + std::string(kUsage) + ")");
      path = args[++i];
    } else if (args[i].rfind("--control=", 0) == 0) {
      path = args[i].substr(10);
    } else if (args[i].rfind("-", 0) == 0) {
      throw Error("kdom balloon: unknown option '" + args[i] + "' (" + kUsage + ")");
    } else {
      words.push_back(args[i]);
    }
  }
  if (path.empty()) throw Error(std::string("kdom balloon needs --control PATH (") + kUsage + ")");
  if (words.size() == 2 && words[0] == "set") {
    const uint64_t mib = parse_mib(words[1]);
    control_request(path, {{"op", "balloon-set"}, {"target_mib", mib}});
    out << "balloon target set to " << mib << " MiB\n";
    return 0;
  }
  if (words.size() == 1 && words[0] == "stats") {
    const nlohmann::json reply = control_request(path, {{"op", "balloon-stats"}});
    for (const char* key : {"target_mib", "actual_mib", "actual_pages", "pages_inflated", "pages_deflated",
                            "pages_reported", "pages_refused", "stats_age_s"})
      if (reply.contains(key) && !reply[key].is_null()) out << key << ": " << number_text(reply[key]) << "\n";
    if (reply.contains("stats") && reply["stats"].is_object()) {
      if (reply["stats"].empty()) out << "guest statistics: none yet\n";
      for (const auto& [name, value] : reply["stats"].items()) out << "stats." << name << ": " << number_text(value) << "\n";
    }
    return 0;
  }
  throw Error("kdom balloon: expected 'set MIB' or 'stats' (" + std::string(kUsage) + ")");
}

}  // namespace kdom::cli
