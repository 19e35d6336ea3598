#include "agent/images/registry_credentials.h"

#include "api/base64.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ferry::images {
namespace {

// "https://index.docker.io/v1/" → "docker.io"; "http://reg:5000/team/" → "reg:5000/team".
std::string normalizeLocation(std::string key) {
  for (const char* scheme : {"https://", "http://"})
    if (key.rfind(scheme, 0) == 0) key = key.substr(std::string(scheme).size());
  while (!key.empty() && key.back() == '/') key.pop_back();
  for (const char* apiSuffix : {"/v1", "/v2"}) {
    std::string s = apiSuffix;
    if (key.size() > s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0) key.resize(key.size() - s.size());
  }
  std::string host = key.substr(0, key.find('/'));
  std::string path = key.size() > host.size() ? key.substr(host.size()) : "";
  if (host == "index.docker.io" || host == "registry-1.docker.io" || host == "registry.hub.docker.com") host = "docker.io";
  return host + path;
}

std::string jsonString(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

void CredentialSet::append(const CredentialSet& other) {
  entries_.insert(entries_.end(), other.entries_.begin(), other.entries_.end());
}

Credentials CredentialSet::lookup(const std::string& registry, const std::string& repository) const {
  std::string wanted = normalizeLocation(registry) + "/" + repository;
  const CredentialEntry* best = nullptr;
  for (const auto& e : entries_) {
    bool matches = wanted.rfind(e.location + "/", 0) == 0;
    if (matches && (!best || e.location.size() > best->location.size())) best = &e;
  }
  return best ? best->credentials : Credentials{};
}

Result<CredentialSet> parseDockerConfigJson(const std::string& text) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return fail(Error::invalid("docker config: not a JSON object"));
  // .dockerconfigjson nests entries under "auths"; the legacy .dockercfg does not.
  const nlohmann::json& auths = doc.contains("auths") ? doc["auths"] : doc;
  if (!auths.is_object()) return fail(Error::invalid("docker config: \"auths\" is not an object"));
  CredentialSet set;
  for (auto it = auths.begin(); it != auths.end(); ++it) {
    if (!it.value().is_object()) return fail(Error::invalid(fmt::format("docker config: auths[\"{}\"] is not an object", it.key())));
    CredentialEntry entry{normalizeLocation(it.key()), {}};
    entry.credentials.username = jsonString(it.value(), "username");
    entry.credentials.password = jsonString(it.value(), "password");
    entry.credentials.identityToken = jsonString(it.value(), "identitytoken");
    std::string auth = jsonString(it.value(), "auth");
    if (!auth.empty()) {
      auto decoded = api::base64Decode(auth);
      if (!decoded) return fail(Error::invalid(fmt::format("docker config: auths[\"{}\"].auth is not base64", it.key())));
      auto colon = decoded->find(':');
      if (colon == std::string::npos)
        return fail(Error::invalid(fmt::format("docker config: auths[\"{}\"].auth is not base64(\"user:password\")", it.key())));
      entry.credentials.username = decoded->substr(0, colon);
      entry.credentials.password = decoded->substr(colon + 1);
    }
    set.add(std::move(entry));
  }
  return set;
}

Result<CredentialSet> loadDockerConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return CredentialSet{};
    return failErrno("open " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  auto set = parseDockerConfigJson(text.str());
  if (!set) return fail(std::move(set.error()).wrap(path));
  return set;
}

}  // namespace ferry::images
