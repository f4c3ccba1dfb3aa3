// Api: kdomd's HTTP routes (/v1/...), each a small handler that checks the request and calls
// the Supervisor or the Store. The table of routes is also what the test holds docs/openapi.json against.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "toolstack/http_server.h"
#include "toolstack/store.h"
#include "toolstack/supervisor.h"

namespace kdom::toolstack {

class Api {
 public:
  struct Route {
    std::string method;
    std::string pattern;  // "/v1/domains/{dom}/pause": a {word} matches one path segment
    std::function<HttpReply(const HttpRequest&, const std::vector<std::string>& parameters)> handler;
  };

  Api(Supervisor& supervisor, Store& store);
  HttpReply handle(const HttpRequest& request) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  nlohmann::json host() const;
  HttpReply console(const HttpRequest& request, const std::string& dom) const;
  HttpReply events(const HttpRequest& request) const;
  HttpReply store_watch(const HttpRequest& request) const;

  Supervisor& supervisor_;
  Store& store_;
  std::vector<Route> routes_;
  const double started_;
};

}  // namespace kdom::toolstack
