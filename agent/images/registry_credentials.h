// Registry credentials: from a kubernetes.io/dockerconfigjson Secret (imagePullSecrets)
// and from the node's credential file (same JSON format, like ~/.docker/config.json).
#pragma once

#include <string>
#include <vector>

#include "api/error.h"

namespace ferry::images {

struct Credentials {
  std::string username;
  std::string password;
  std::string identityToken;  // OAuth2 refresh token for the bearer flow, when given

  bool empty() const { return username.empty() && password.empty() && identityToken.empty(); }
};

// One "auths" entry: the key as written ("https://index.docker.io/v1/", "reg:5000",
// "reg:5000/team") reduced to host[/path], plus its credentials.
struct CredentialEntry {
  std::string location;  // "docker.io", "127.0.0.1:5000/team"
  Credentials credentials;
};

// A list of credential entries; earlier lists (pull secrets) are asked before later ones
// (the node file), as the kubelet does.
class CredentialSet {
 public:
  void add(CredentialEntry entry) { entries_.push_back(std::move(entry)); }
  void append(const CredentialSet& other);
  // The best entry for `registry` + `repository` (the longest matching location),
  // or empty Credentials when none matches.
  Credentials lookup(const std::string& registry, const std::string& repository) const;
  const std::vector<CredentialEntry>& entries() const { return entries_; }

 private:
  std::vector<CredentialEntry> entries_;
};

// Parses the decoded text of a Secret's ".dockerconfigjson" key ({"auths": {...}}) or of a
// legacy ".dockercfg" ({host: {...}}). Each entry has "auth" (base64 "user:pass") or
// "username"/"password", optionally "identitytoken".
Result<CredentialSet> parseDockerConfigJson(const std::string& text);

// Reads a file in the same format; a missing file is an empty set, not an error.
Result<CredentialSet> loadDockerConfigFile(const std::string& path);

}  // namespace ferry::images
