// The backends of the behaviour suite. Each makes its own temp directory (and,
// for etcd, its own etcd process on loopback) and removes it at the end.
#pragma once

#include "controlplane-lite/store.h"

#include <memory>
#include <string>
#include <vector>

namespace ferry::cp::testing {

class Backend {
 public:
  virtual ~Backend() = default;
  // Non-empty: why this backend cannot run here (the test skips with it).
  virtual std::string unavailable() { return {}; }
  // Opens the store; a second call opens the same data again.
  virtual Result<std::unique_ptr<Store>> open() = 0;
  virtual Status compact(Store& store, std::int64_t revision) = 0;
};

std::vector<std::string> backendNames();
std::unique_ptr<Backend> makeBackend(const std::string& name);

}  // namespace ferry::cp::testing
