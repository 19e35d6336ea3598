// openStore: the --datastore flag's grammar lives here and nowhere else.
#include "controlplane-lite/store.h"

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
    return fail(ENOSYS, "--datastore " + datastore + ": the etcd backend is not in this build yet");
  }
  return fail(EINVAL, "--datastore: \"" + datastore + "\" is neither sqlite nor etcd://host:port[,host:port]");
}

}  // namespace ferry::cp
