// openStore: the --datastore flag's grammar lives here and nowhere else.
#include "controlplane-lite/store.h"

#include "controlplane-lite/etcd_store.h"
#include "controlplane-lite/sqlite_store.h"

namespace ferry::cp {

Result<std::unique_ptr<Store>> openStore(const std::string& datastore, const std::string& dataDir) {
  if (datastore.empty() || datastore == "sqlite") {
    if (dataDir.empty()) return fail(EINVAL, "--data-dir: required for the sqlite datastore");
    auto store = SqliteStore::open(dataDir + "/state.db");
    if (!store) return fail(store.error().wrap("--datastore sqlite"));
    return std::unique_ptr<Store>(std::move(*store));
  }
  if (datastore.starts_with("etcd://")) {
    std::vector<std::string> endpoints;
    std::string rest = datastore.substr(7);
    std::size_t start = 0;
    while (start <= rest.size()) {
      std::size_t comma = rest.find(',', start);
      if (comma == std::string::npos) comma = rest.size();
      std::string endpoint = rest.substr(start, comma - start);
      if (endpoint.ends_with("/")) endpoint.pop_back();
      if (endpoint.empty() || endpoint.find(':') == std::string::npos) {
        return fail(EINVAL, "--datastore " + datastore + ": \"" + endpoint + "\" is not host:port");
      }
      endpoints.push_back(endpoint);
      start = comma + 1;
    }
    auto store = EtcdStore::open(endpoints);
    if (!store) return fail(store.error().wrap("--datastore " + datastore));
    return std::unique_ptr<Store>(std::move(*store));
  }
  return fail(EINVAL, "--datastore: \"" + datastore + "\" is neither sqlite nor etcd://host:port[,host:port]");
}

}  // namespace ferry::cp
