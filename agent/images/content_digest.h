// sha256 content digests ("sha256:<hex>"), the names of everything in the image store.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "api/error.h"

namespace ferry::images {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t size);
  std::string digest();  // "sha256:<64 hex>"; call once

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string digestOf(const std::string& data);
Result<std::string> digestOfFile(const std::string& path);

// True for "sha256:" followed by 64 lowercase hex digits; the only form the store accepts,
// so a digest can safely become a file name.
bool isSha256Digest(const std::string& digest);
// "sha256:abc..." → "abc...".
std::string digestHex(const std::string& digest);

}  // namespace ferry::images
