// libFuzzer target: the store's guest protocol (StoreGuestServer::handle), every line a
// hostile guest (domain 5) may send over vsock, against a store with its own keys, another
// domain's and the host's. Whatever it sends: no crash or sanitizer report, every reply one
// line starting OK or ERR, domain 6's and the host's keys untouched, the guest within its
// node quota.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "toolstack/store_guest_server.h"

using kdom::toolstack::Store;
using kdom::toolstack::StoreGuestServer;
using kdom::toolstack::StoreLimits;
using kdom::toolstack::StoreNode;
using kdom::toolstack::StorePermissions;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StoreLimits limits;
  limits.nodes = 32;
  limits.value_bytes = 64;
  Store store(std::map<std::string, StoreNode>{}, Store::Persist{}, limits);
  store.write(Store::kHost, "/local/domain/5/name", "guest");
  store.set_permissions(Store::kHost, "/local/domain/5", StorePermissions::parse("n0 r5"));
  store.set_permissions(Store::kHost, "/local/domain/5/name", StorePermissions::parse("n0 r5"));
  store.write(Store::kHost, "/local/domain/5/data", "");
  store.set_permissions(Store::kHost, "/local/domain/5/data", StorePermissions::parse("n5"));
  store.write(Store::kHost, "/local/domain/6/secret", "s3");
  store.set_permissions(Store::kHost, "/local/domain/6", StorePermissions::parse("n0 r6"));
  store.write(Store::kHost, "/tool/key", "host");
  StoreGuestServer server(store);

  const std::string input(reinterpret_cast<const char*>(data), size);
  size_t start = 0;
  while (start <= input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    const std::string reply = server.handle(5, input.substr(start, end - start));
    if ((reply.rfind("OK", 0) != 0 && reply.rfind("ERR ", 0) != 0) || reply.find('\n') != std::string::npos) std::abort();
    start = end + 1;
  }
  if (store.read(Store::kHost, "/local/domain/6/secret") != "s3" || store.read(Store::kHost, "/tool/key") != "host" ||
      store.permissions(Store::kHost, "/local/domain/6").text() != "n0 r6" ||
      store.read(Store::kHost, "/local/domain/5/name") != "guest" || store.nodes_owned(5) > limits.nodes)
    std::abort();
  return 0;
}
