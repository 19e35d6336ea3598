// One repository on an OCI Distribution registry, spoken to over http::Connection: manifests and
// blobs, with anonymous, basic and bearer-token authentication. Internal to the store.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "agent/images/image_reference.h"
#include "agent/images/image_store.h"
#include "agent/images/registry_credentials.h"
#include "api/error.h"

namespace ferry::images {

struct FetchedManifest {
  std::string body;
  std::string mediaType;  // from the body, else from Content-Type
  std::string digest;     // sha256 of the body, checked against what was asked for
};

class RegistryClient {
 public:
  RegistryClient(const RegistryOptions& options, ImageReference ref, Credentials credentials);

  // HEAD of the manifest: its digest from Docker-Content-Digest, or empty when the
  // registry does not say.
  Result<std::string> manifestDigest(const std::string& selector);
  // GET of a manifest or index by tag or digest. A digest selector is verified.
  Result<FetchedManifest> fetchManifest(const std::string& selector);
  // Downloads a blob to `path`, verifying its sha256 and (when >= 0) its size.
  Status fetchBlob(const std::string& digest, std::int64_t expectedSize, const std::string& path);

  // "https://host:port" — plain http when configured so.
  const std::string& baseUrl() const { return baseUrl_; }

 private:
  struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;  // lower-case names, last response only
    std::string body;
  };
  struct Sink;
  Result<Response> send(const std::string& method, const std::string& url, const std::string& accept, Sink* sink,
                        bool withAuthorization);
  // send() plus one round of authentication when the registry answers 401.
  Result<Response> sendAuthenticated(const std::string& method, const std::string& url, const std::string& accept,
                                     Sink* sink);
  Status authenticate(const std::string& challenge);

  RegistryOptions options_;
  ImageReference ref_;
  Credentials credentials_;
  std::string baseUrl_;
  std::string authorization_;  // "Basic ..." / "Bearer ..." once known
};

}  // namespace ferry::images
