#include "tests/unit/store/store_backends.h"

#include "controlplane-lite/sqlite_store.h"
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

}  // namespace

std::vector<std::string> backendNames() { return {"sqlite"}; }

std::unique_ptr<Backend> makeBackend(const std::string& name) {
  if (name == "sqlite") return std::make_unique<SqliteBackend>();
  return nullptr;
}

}  // namespace ferry::cp::testing
