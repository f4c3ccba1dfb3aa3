// Api: routes to Supervisor and Store calls; errors to statuses (400, 403, 404, 409, 413, 504).
#include "toolstack/api.h"

#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "base/sse.h"
#include "base/stream_socket.h"
#include "config/domain_config.h"
#include "toolstack/metrics.h"

#ifndef KDOM_VERSION
#define KDOM_VERSION "unknown"
#endif

namespace kdom::toolstack {

using nlohmann::json;

namespace {

std::vector<std::string> segments_of(const std::string& path) {
  std::vector<std::string> segments;
  std::istringstream stream(path);
  for (std::string segment; std::getline(stream, segment, '/');)
    if (!segment.empty()) segments.push_back(segment);
  return segments;
}

// The request's body as a JSON object ({} when empty); throws Error when it is not one.
json body_object(const HttpRequest& request) {
  if (request.body.empty()) return json::object();
  json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw Error("the request body is not valid JSON");
  if (!body.is_object()) throw Error("the request body must be a JSON object");
  return body;
}

uint64_t meminfo_mib(const std::string& key) {
  std::ifstream file("/proc/meminfo");
  std::string name;
  uint64_t kib = 0;
  std::string unit;
  while (file >> name >> kib >> unit)
    if (name == key + ":") return kib / 1024;
  return 0;
}

std::string kvm_kind() {
  if (!std::filesystem::exists("/dev/kvm")) return "none";
  if (std::filesystem::exists("/sys/module/kvm_pvm")) return "kvm_pvm";
  return std::filesystem::exists("/sys/module/kvm_amd") || std::filesystem::exists("/sys/module/kvm_intel") ? "hardware"
                                                                                                            : "unknown";
}

double monotonic_seconds() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// What an interactive attach shows of the past: about a screen (the prompt and what led to it),
// as a terminal multiplexer would; `kdom console --log` has all that is kept.
constexpr size_t kAttachReplayBytes = 4096;

// An event stream with nothing to say sends a comment this often, so that proxies keep the
// connection open; whether its client hung up is checked more often.
constexpr auto kEventKeepAlive = std::chrono::seconds(15);
constexpr auto kHangUpCheck = std::chrono::seconds(1);
// A client that takes no bytes for this long is cut off rather than holding a thread forever.
constexpr int kStreamSendTimeoutSeconds = 30;

// A reply that streams `subscription`'s events as server-sent events, `first` before them,
// until the subscription ends or the client goes; `release` runs once it is over, or when the
// reply is dropped unsent.
HttpReply event_stream(std::shared_ptr<EventBus::Subscription> subscription, std::function<void()> release,
                       std::string first) {
  struct Reader {
    Reader(std::shared_ptr<EventBus::Subscription> events, std::function<void()> on_end)
        : subscription(std::move(events)), release(std::move(on_end)) {}
    ~Reader() { release(); }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    std::shared_ptr<EventBus::Subscription> subscription;
    std::function<void()> release;
  };
  auto reader = std::make_shared<Reader>(std::move(subscription), std::move(release));
  HttpReply reply;
  reply.content_type = "text/event-stream";
  reply.stream = [reader, first = std::move(first)](int fd) {
    EventBus::Subscription& subscription = *reader->subscription;
    const timeval send_timeout{kStreamSendTimeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
    bool open = write_chunk(fd, first);
    auto last_write = std::chrono::steady_clock::now();
    while (open) {
      json event;
      const auto next = subscription.next(event, kHangUpCheck);
      if (next == EventBus::Subscription::Next::kEnded) break;
      if (next == EventBus::Subscription::Next::kTimeout) {
        if (peer_hung_up(fd)) break;
        if (std::chrono::steady_clock::now() - last_write < kEventKeepAlive) continue;
        open = write_chunk(fd, sse_comment("keep-alive"));
      } else {
        open = write_chunk(fd, sse_message(event["event"].get<std::string>(), event.dump(), event["seq"].get<uint64_t>()));
      }
      last_write = std::chrono::steady_clock::now();
    }
  };
  return reply;
}

// The store path a request names (?path=P).
std::string query_path(const HttpRequest& request) {
  auto it = request.query.find("path");
  if (it == request.query.end() || it->second.empty()) throw Error("the store requests need ?path=PATH");
  if (it->second.front() != '/') throw Error("store path '" + it->second.substr(0, 100) + "' is not absolute (it starts with /)");
  return it->second;
}

// `text` as a whole decimal number that fits 64 bits, if it is one.
std::optional<uint64_t> decimal_id(const std::string& text) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoull(text);
}

// The transaction a request is part of (?transaction=N or "transaction" in its body), 0 if none.
uint64_t transaction_of(const HttpRequest& request, const json& body) {
  if (body.contains("transaction")) {
    if (!body["transaction"].is_number_unsigned()) throw Error("\"transaction\" must be a transaction id");
    return body["transaction"].get<uint64_t>();
  }
  auto it = request.query.find("transaction");
  if (it == request.query.end()) return 0;
  const auto id = decimal_id(it->second);
  if (!id) throw Error("?transaction= must be a transaction id");
  return *id;
}

// ?NAME=1 (or any value but 0).
// A migration request's body: {"target", "token"?, "downtime_ms"?, "max_bandwidth_mib"?, "max_rounds"?,
// "auto_converge"?}.
MigrateOptions migrate_options(const HttpRequest& request) {
  const json body = body_object(request);
  MigrateOptions options;
  if (!body.contains("target") || !body["target"].is_string() || body["target"].get<std::string>().empty())
    throw Error("a migration needs \"target\": the destination, \"HOST\" or \"HOST:PORT\" (or \"localhost\")");
  options.target = body["target"].get<std::string>();
  for (const auto& item : body.items()) {
    const std::string& key = item.key();
    if (key == "target") continue;
    if (key == "token") {
      if (!item.value().is_string()) throw Error("\"token\" must be a string");
      options.token = item.value().get<std::string>();
      continue;
    }
    if (key == "auto_converge") {
      if (!item.value().is_boolean()) throw Error("\"auto_converge\" must be true or false");
      options.auto_converge = item.value().get<bool>();
      continue;
    }
    uint32_t* number = key == "downtime_ms"         ? &options.downtime_ms
                       : key == "max_bandwidth_mib" ? &options.max_bandwidth_mib
                       : key == "max_rounds"        ? &options.max_rounds
                                                    : nullptr;
    if (!number)
      throw Error("unknown key '" + key +
                  "' (a migration takes \"target\", \"token\", \"downtime_ms\", \"max_bandwidth_mib\", \"max_rounds\" and "
                  "\"auto_converge\")");
    if (!item.value().is_number_unsigned() || item.value().get<uint64_t>() > 1'000'000)
      throw Error("\"" + key + "\" must be a whole number up to 1000000");
    *number = item.value().get<uint32_t>();
  }
  if (options.downtime_ms == 0) throw Error("\"downtime_ms\" must be at least 1");
  if (options.max_rounds == 0 || options.max_rounds > 1000) throw Error("\"max_rounds\" must be from 1 to 1000");
  return options;
}

bool flag(const HttpRequest& request, const std::string& name) {
  auto it = request.query.find(name);
  return it != request.query.end() && it->second != "0";
}

// ?wait=SECONDS on a detach: how long the guest has to let go (default 30, at most a day).
uint32_t wait_seconds(const HttpRequest& request) {
  auto it = request.query.find("wait");
  if (it == request.query.end()) return 30;
  const auto seconds = decimal_id(it->second);
  if (!seconds || *seconds > 86400) throw Error("wait must be a whole number of seconds, at most 86400");
  return static_cast<uint32_t>(*seconds);
}

// The transaction a path segment names (/v1/store/transactions/{id}).
uint64_t transaction_id(const std::string& text) {
  const auto id = decimal_id(text);
  if (!id) throw StoreMissingError("no store transaction '" + text + "'");
  return *id;
}

}  // namespace

Api::Api(Supervisor& supervisor, Store& store) : supervisor_(supervisor), store_(store), started_(monotonic_seconds()) {
  auto& s = supervisor_;
  routes_ = {
      {"GET", "/v1/host", [this](const HttpRequest&, const auto&) { return HttpReply::json(200, host()); }},
      {"GET", "/v1/domains", [&s](const HttpRequest&, const auto&) { return HttpReply::json(200, s.list()); }},
      {"POST", "/v1/domains",
       [&s](const HttpRequest& request, const auto&) {
         const json body = body_object(request);
         const bool paused = flag(request, "paused");
         return HttpReply::json(201, s.create(config::domain_config_from_json(body), paused));
       }},
      {"GET", "/v1/domains/{dom}", [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.info(p[0])); }},
      {"DELETE", "/v1/domains/{dom}",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, {{"destroyed", s.destroy(p[0])}}); }},
      {"POST", "/v1/domains/{dom}/save",
       [&s](const HttpRequest& request, const auto& p) {
         const json body = body_object(request);
         if (!body.contains("path") || !body["path"].is_string()) throw Error("the body needs a \"path\" string");
         const std::string then = body.value("then", json("destroy")).is_string()
                                      ? body.value("then", std::string("destroy"))
                                      : throw Error("\"then\" must be \"destroy\", \"running\" or \"paused\"");
         return HttpReply::json(200, s.save(p[0], body["path"].get<std::string>(), then));
       }},
      {"POST", "/v1/restore",
       [&s](const HttpRequest& request, const auto&) {
         const json body = body_object(request);
         if (!body.contains("path") || !body["path"].is_string()) throw Error("the body needs a \"path\" string");
         std::vector<std::string> overrides;
         if (body.contains("overrides")) {
           const json& list = body["overrides"];
           if (!list.is_array()) throw Error("\"overrides\" must be a list of \"key=value\" strings");
           for (const auto& item : list) {
             if (!item.is_string()) throw Error("\"overrides\" must be a list of \"key=value\" strings");
             overrides.push_back(item.get<std::string>());
           }
         }
         std::optional<std::string> name;
         if (body.contains("name")) {
           if (!body["name"].is_string()) throw Error("\"name\" must be a string");
           name = body["name"].get<std::string>();
         }
         for (const auto& item : body.items())
           if (item.key() != "path" && item.key() != "overrides" && item.key() != "name")
             throw Error("unknown key '" + item.key() + "' (a restore takes \"path\", \"overrides\" and \"name\")");
         return HttpReply::json(
             201, s.restore(body["path"].get<std::string>(), flag(request, "paused"), overrides, name));
       }},
      {"POST", "/v1/domains/{dom}/migrate",
       [&s](const HttpRequest& request, const auto& p) { return HttpReply::json(200, s.migrate(p[0], migrate_options(request))); }},
      {"POST", "/v1/domains/{dom}/migrate/cancel",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.cancel_migration(p[0])); }},
      {"POST", "/v1/domains/{dom}/pause",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.pause(p[0])); }},
      {"POST", "/v1/domains/{dom}/unpause",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.unpause(p[0])); }},
      {"POST", "/v1/domains/{dom}/shutdown",
       [&s](const HttpRequest& request, const auto& p) {
         const json body = body_object(request);
         std::optional<uint32_t> wait;
         if (body.contains("wait_seconds")) {
           if (!body["wait_seconds"].is_number_unsigned() || body["wait_seconds"].get<uint64_t>() > 86400)
             throw Error("wait_seconds must be a whole number of seconds, at most 86400");
           wait = body["wait_seconds"].get<uint32_t>();
         }
         return HttpReply::json(200, s.shutdown(p[0], wait));
       }},
      {"POST", "/v1/domains/{dom}/reboot",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.reboot(p[0])); }},
      {"POST", "/v1/domains/{dom}/rename",
       [&s](const HttpRequest& request, const auto& p) {
         const json body = body_object(request);
         if (!body.contains("name") || !body["name"].is_string()) throw Error("rename needs \"name\", a string");
         return HttpReply::json(200, s.rename(p[0], body["name"].get<std::string>()));
       }},
      {"POST", "/v1/domains/{dom}/mem-set",
       [&s](const HttpRequest& request, const auto& p) {
         const json body = body_object(request);
         if (!body.contains("memory_mib") || !body["memory_mib"].is_number_unsigned())
           throw Error("mem-set needs \"memory_mib\", a whole number of MiB");
         return HttpReply::json(200, s.mem_set(p[0], body["memory_mib"].get<uint64_t>()));
       }},
      {"GET", "/v1/domains/{dom}/console",
       [this](const HttpRequest& request, const auto& p) { return console(request, p[0]); }},
      {"GET", "/v1/events", [this](const HttpRequest& request, const auto&) { return events(request); }},
      {"GET", "/v1/stats", [&s](const HttpRequest&, const auto&) { return HttpReply::json(200, {{"domains", s.all_stats()}}); }},
      {"GET", "/v1/domains/{dom}/stats",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.stats(p[0])); }},
      {"POST", "/v1/domains/{dom}/vcpus/{vcpu}/pin",
       [&s](const HttpRequest& request, const auto& p) {
         const json body = body_object(request);
         if (!body.contains("cpus") || !body["cpus"].is_string())
           throw Error("vcpu-pin needs \"cpus\", a CPU list such as \"0-3,5\" or \"all\"");
         if (p[1].empty() || p[1].size() > 4 || p[1].find_first_not_of("0123456789") != std::string::npos)
           throw Error("'" + p[1].substr(0, 20) + "' is not a vCPU number");
         return HttpReply::json(200, s.vcpu_pin(p[0], static_cast<uint32_t>(std::stoul(p[1])), body["cpus"].get<std::string>()));
       }},
      {"GET", "/v1/domains/{dom}/disks",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.block_list(p[0])); }},
      {"POST", "/v1/domains/{dom}/disks",
       [&s](const HttpRequest& request, const auto& p) {
         return HttpReply::json(201, s.block_attach(p[0], config::disk_spec_from_json(body_object(request), "disk")));
       }},
      {"DELETE", "/v1/domains/{dom}/disks/{vdev}",
       [&s](const HttpRequest& request, const auto& p) {
         return HttpReply::json(200, s.block_detach(p[0], p[1], flag(request, "force"), wait_seconds(request)));
       }},
      {"GET", "/v1/domains/{dom}/nics",
       [&s](const HttpRequest&, const auto& p) { return HttpReply::json(200, s.network_list(p[0])); }},
      {"POST", "/v1/domains/{dom}/nics",
       [&s](const HttpRequest& request, const auto& p) {
         return HttpReply::json(201, s.network_attach(p[0], config::vif_spec_from_json(body_object(request), "nic", 0)));
       }},
      {"DELETE", "/v1/domains/{dom}/nics/{nic}",
       [&s](const HttpRequest& request, const auto& p) {
         return HttpReply::json(200, s.network_detach(p[0], p[1], flag(request, "force"), wait_seconds(request)));
       }},
      {"GET", "/metrics",
       [&s](const HttpRequest&, const auto&) {
         HttpReply reply;
         reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
         reply.body = prometheus_metrics(s.all_stats());
         return reply;
       }},
      {"GET", "/v1/store",
       [this](const HttpRequest& request, const auto&) {
         const std::string path = Store::canonical(Store::kHost, query_path(request));
         const uint64_t transaction = transaction_of(request, json::object());
         const auto value = store_.read(Store::kHost, path, transaction);
         if (!value) throw StoreMissingError("no store node " + path);
         return HttpReply::json(200, {{"path", path},
                                      {"value", *value},
                                      {"children", store_.children(Store::kHost, path, transaction)},
                                      {"permissions", store_.permissions(Store::kHost, path, transaction).text()}});
       }},
      {"PUT", "/v1/store",
       [this](const HttpRequest& request, const auto&) {
         const json body = body_object(request);
         const std::string path = Store::canonical(Store::kHost, query_path(request));
         if (!body.contains("value") && !body.contains("permissions"))
           throw Error("a store write needs \"value\" (a string), \"permissions\" (as \"n0 r5\") or both");
         const uint64_t transaction = transaction_of(request, body);
         // Everything is checked before anything is written.
         if (body.contains("value") && !body["value"].is_string()) throw Error("\"value\" must be a string");
         std::optional<StorePermissions> permissions;
         if (body.contains("permissions")) {
           if (!body["permissions"].is_string()) throw Error("\"permissions\" must be a string such as \"n0 r5\"");
           permissions = StorePermissions::parse(body["permissions"].get<std::string>());
         }
         if (body.contains("value")) store_.write(Store::kHost, path, body["value"].get<std::string>(), transaction);
         if (permissions) store_.set_permissions(Store::kHost, path, *permissions, transaction);
         return HttpReply::json(200, {{"path", path}});
       }},
      {"DELETE", "/v1/store",
       [this](const HttpRequest& request, const auto&) {
         const std::string path = Store::canonical(Store::kHost, query_path(request));
         store_.remove(Store::kHost, path, transaction_of(request, json::object()));
         return HttpReply::json(200, {{"path", path}});
       }},
      {"GET", "/v1/store/watch", [this](const HttpRequest& request, const auto&) { return store_watch(request); }},
      {"POST", "/v1/store/transactions",
       [this](const HttpRequest&, const auto&) {
         return HttpReply::json(201, {{"transaction", store_.begin(Store::kHost)}});
       }},
      {"POST", "/v1/store/transactions/{id}/commit",
       [this](const HttpRequest&, const auto& p) {
         store_.commit(Store::kHost, transaction_id(p[0]));
         return HttpReply::json(200, {{"transaction", transaction_id(p[0])}, {"committed", true}});
       }},
      {"DELETE", "/v1/store/transactions/{id}",
       [this](const HttpRequest&, const auto& p) {
         store_.abort(Store::kHost, transaction_id(p[0]));
         return HttpReply::json(200, {{"transaction", transaction_id(p[0])}, {"committed", false}});
       }},
  };
}

HttpReply Api::handle(const HttpRequest& request) const {
  const std::vector<std::string> path = segments_of(request.path);
  bool path_known = false;
  for (const Route& route : routes_) {
    const std::vector<std::string> pattern = segments_of(route.pattern);
    if (pattern.size() != path.size()) continue;
    std::vector<std::string> parameters;
    bool matches = true;
    for (size_t i = 0; i < pattern.size() && matches; ++i) {
      if (pattern[i].front() == '{')
        parameters.push_back(path[i]);
      else
        matches = pattern[i] == path[i];
    }
    if (!matches) continue;
    path_known = true;
    if (route.method != request.method) continue;
    try {
      return route.handler(request, parameters);
    } catch (const NotFoundError& error) {
      return HttpReply::error(404, error.what());
    } catch (const StoreMissingError& error) {
      return HttpReply::error(404, error.what());
    } catch (const StoreDeniedError& error) {
      return HttpReply::error(403, error.what());
    } catch (const StoreQuotaError& error) {
      return HttpReply::error(413, error.what());
    } catch (const StoreConflictError& error) {
      return HttpReply::error(409, error.what());
    } catch (const ConflictError& error) {
      return HttpReply::error(409, error.what());
    } catch (const TimeoutError& error) {
      return HttpReply::error(504, error.what());
    } catch (const Error& error) {
      return HttpReply::error(400, error.what());
    }
  }
  if (path_known) return HttpReply::error(405, "method " + request.method + " is not allowed on " + request.path);
  return HttpReply::error(404, "no such resource: " + request.path);
}

json Api::host() const {
  char hostname[256] = {};
  ::gethostname(hostname, sizeof(hostname) - 1);
  utsname names{};
  ::uname(&names);
  return {{"hostname", hostname},
          {"kdom_version", KDOM_VERSION},
          {"kernel", std::string(names.release) + " " + names.version},
          {"nr_cpus", sysconf(_SC_NPROCESSORS_ONLN)},
          {"total_memory_mib", meminfo_mib("MemTotal")},
          {"free_memory_mib", meminfo_mib("MemAvailable")},
          {"kvm", kvm_kind()},
          {"domains", supervisor_.domain_count()},
          {"event_readers", supervisor_.events().reader_count()},
          {"daemon_pid", ::getpid()},
          {"daemon_uptime_s", monotonic_seconds() - started_}};
}

HttpReply Api::console(const HttpRequest& request, const std::string& dom) const {
  std::shared_ptr<ConsoleHub> hub = supervisor_.console(dom);
  auto upgrade = request.headers.find("upgrade");
  HttpReply reply;
  reply.content_type = "text/plain; charset=utf-8";
  if (upgrade != request.headers.end()) {
    if (upgrade->second != "kdom-console")
      throw Error("the console upgrades only to 'kdom-console', not '" + upgrade->second + "'");
    reply.status = 101;
    reply.stream = [hub](int fd) {
      auto follower = hub->follow();
      send_all(fd, console_screen_tail(hub->recent(), kAttachReplayBytes));
      // The user's keystrokes, on a thread of their own; their end (detach) ends the session.
      std::thread input([hub, follower, fd] {
        char buffer[4096];
        for (;;) {
          ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          hub->send_input({buffer, static_cast<size_t>(n)});
        }
        hub->unfollow(follower);
      });
      for (std::string chunk; follower->next(chunk);) send_all(fd, chunk);
      ::shutdown(fd, SHUT_RDWR);
      input.join();
    };
    return reply;
  }
  if (request.query.count("follow") && request.query.at("follow") != "0") {
    reply.stream = [hub](int fd) {
      auto follower = hub->follow();
      bool open = write_chunk(fd, hub->recent());
      for (std::string chunk; open && follower->next(chunk);) open = write_chunk(fd, chunk);
      hub->unfollow(follower);
    };
    return reply;
  }
  reply.body = hub->recent();
  return reply;
}

HttpReply Api::events(const HttpRequest& request) const {
  // ?domain=NAME|ID: only that domain's events (by name, old name on a rename, or id); the
  // domain need not exist yet, so a reader can wait for one being created.
  EventBus::Filter wanted;
  if (auto it = request.query.find("domain"); it != request.query.end()) {
    if (it->second.empty()) throw Error("events: ?domain= needs a domain name or id");
    wanted = [domain = it->second](const json& event) {
      return event.value("name", "") == domain || event.value("old_name", "") == domain ||
             (event.contains("id") && event["id"].dump() == domain);
    };
  }
  EventBus& bus = supervisor_.events();
  // Subscribed before the headers go out: a client that has them misses nothing after.
  auto subscription = bus.subscribe(std::move(wanted));
  return event_stream(subscription, [&bus, subscription] { bus.unsubscribe(subscription); }, sse_comment("kdomd events"));
}

HttpReply Api::store_watch(const HttpRequest& request) const {
  const std::string path = Store::canonical(Store::kHost, query_path(request));
  auto subscription = store_.watch(Store::kHost, path);
  Store& store = store_;
  // As xenstore, a new watch fires once at once, with its own path.
  const std::string first = sse_message("watch", json{{"event", "watch"}, {"path", path}}.dump());
  return event_stream(subscription, [&store, subscription] { store.unwatch(Store::kHost, subscription); }, first);
}

}  // namespace kdom::toolstack
