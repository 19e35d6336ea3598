#include "tests/unit/store/store_backends.h"

#include "controlplane-lite/etcd_store.h"
#include "controlplane-lite/sqlite_store.h"
#include "tests/unit/store/etcd_process.h"
#include "tests/unit/store/store_fixture.h"

#include <filesystem>

namespace ferry::cp::testing {
namespace {

class SqliteBackend final : public Backend {
 public:
  SqliteBackend() : dir_(makeTempDir("store-sqlite")) {}
  ~SqliteBackend() override { std::filesystem::remove_all(dir_); }

  Result<std::unique_ptr<Store>> open() override {
    auto store = SqliteStore::open((dir_ / "state.db").string());
    if (!store) return fail(store.error());
    return std::unique_ptr<Store>(std::move(*store));
  }
  Status compact(Store& store, std::int64_t revision) override {
    return dynamic_cast<SqliteStore&>(store).compact(revision);
  }

 private:
  std::filesystem::path dir_;
};

class EtcdBackend final : public Backend {
 public:
  std::string unavailable() override {
    if (!EtcdProcess::available()) return std::string(EtcdProcess::kBinary) + " is not installed (Debian etcd-server)";
    if (!etcd_.start()) return "etcd did not start: " + etcd_.error();
    return {};
  }
  Result<std::unique_ptr<Store>> open() override {
    // etcd accepts connections a moment before it serves requests.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (true) {
      auto store = EtcdStore::open({etcd_.endpoint()});
      if (store) return std::unique_ptr<Store>(std::move(*store));
      if (std::chrono::steady_clock::now() > deadline) return fail(store.error());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  Status compact(Store& store, std::int64_t revision) override {
    return dynamic_cast<EtcdStore&>(store).compact(revision);
  }

 private:
  EtcdProcess etcd_;
};

}  // namespace

std::vector<std::string> backendNames() { return {"sqlite", "etcd"}; }

std::unique_ptr<Backend> makeBackend(const std::string& name) {
  if (name == "sqlite") return std::make_unique<SqliteBackend>();
  if (name == "etcd") return std::make_unique<EtcdBackend>();
  return nullptr;
}

}  // namespace ferry::cp::testing
