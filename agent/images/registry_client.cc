#include "agent/images/registry_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "agent/images/content_digest.h"
#include "api/base64.h"
#include "controlplane-lite/http_client.h"

namespace ferry::images {
namespace {

constexpr std::int64_t kMaxManifestBytes = 8 << 20;

const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool isLoopbackHost(const std::string& registry) {
  std::string host = registry;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Parses `Bearer realm="...",service="...",scope="..."` into its scheme and parameters.
std::pair<std::string, std::map<std::string, std::string>> parseChallenge(const std::string& header) {
  std::map<std::string, std::string> params;
  std::string h = trim(header);
  size_t space = h.find(' ');
  std::string scheme = lower(h.substr(0, space));
  size_t i = space == std::string::npos ? h.size() : space + 1;
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
    size_t eq = h.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = lower(trim(h.substr(i, eq - i)));
    i = eq + 1;
    std::string value;
    if (i < h.size() && h[i] == '"') {
      ++i;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        value.push_back(h[i++]);
      }
      ++i;
    } else {
      size_t comma = h.find(',', i);
      value = trim(h.substr(i, comma == std::string::npos ? std::string::npos : comma - i));
      i = comma == std::string::npos ? h.size() : comma;
    }
    params[key] = value;
  }
  return {scheme, params};
}

std::string urlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace

// Where a response body goes: a string (capped) or a file with a running sha256.
struct RegistryClient::Sink {
  std::string* text = nullptr;
  int fd = -1;
  Sha256* hash = nullptr;
  std::int64_t limit = kMaxManifestBytes;
  std::int64_t written = 0;      // to the file
  std::int64_t textWritten = 0;  // to memory
  bool overLimit = false;
  bool writeFailed = false;
  long status = 0;  // of the response being received; error bodies are not stored in files

  void reset() {
    if (text) text->clear();
    textWritten = 0;
  }

  // One piece of the body; false aborts the transfer (over the limit, a failed write).
  bool write(const char* data, size_t len) {
    // Error bodies and redirect bodies are small and go to memory, never into the blob file.
    bool toFile = fd >= 0 && status >= 200 && status < 300;
    if (!toFile) {
      if (textWritten + static_cast<std::int64_t>(len) > kMaxManifestBytes) {
        overLimit = true;
        return false;
      }
      textWritten += static_cast<std::int64_t>(len);
      if (text) text->append(data, len);
      return true;
    }
    if (written + static_cast<std::int64_t>(len) > limit) {
      overLimit = true;
      return false;
    }
    written += static_cast<std::int64_t>(len);
    hash->update(data, len);
    size_t done = 0;
    while (done < len) {
      ssize_t w = ::write(fd, data + done, len - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        writeFailed = true;
        return false;
      }
      done += static_cast<size_t>(w);
    }
    return true;
  }
};

RegistryClient::RegistryClient(const RegistryOptions& options, ImageReference ref, Credentials credentials)
    : options_(options), ref_(std::move(ref)), credentials_(std::move(credentials)) {
  std::string host = ref_.registry == "docker.io" ? "registry-1.docker.io" : ref_.registry;
  bool plain = std::find(options_.plainHttpRegistries.begin(), options_.plainHttpRegistries.end(), ref_.registry) !=
                   options_.plainHttpRegistries.end() ||
               (options_.plainHttpForLoopback && isLoopbackHost(ref_.registry));
  baseUrl_ = (plain ? "http://" : "https://") + host;
}

namespace {
// `location` (absolute, or a path on the same host) against the URL it came from.
std::string resolveLocation(const std::string& from, const std::string& location) {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return location;
  size_t schemeEnd = from.find("://");
  size_t pathStart = schemeEnd == std::string::npos ? std::string::npos : from.find('/', schemeEnd + 3);
  std::string origin = pathStart == std::string::npos ? from : from.substr(0, pathStart);
  return origin + (location.rfind('/', 0) == 0 ? location : "/" + location);
}
}  // namespace

Result<RegistryClient::Response> RegistryClient::send(const std::string& method, const std::string& firstUrl,
                                                      const std::string& accept, Sink* sink, bool withAuthorization) {
  Response response;
  Sink textSink;
  textSink.text = &response.body;
  Sink* out = sink ? sink : &textSink;
  std::string url = firstUrl;
  std::string firstHost;
  // Blob storage redirects (up to 5); Authorization is not sent to another host.
  for (int redirects = 0;; ++redirects) {
    auto parsed = http::parseUrl(url);
    if (!parsed) return fail(Error{EINVAL, fmt::format("{} {}: {}", method, url, parsed.error().message)});
    if (firstHost.empty()) firstHost = parsed->host + ":" + parsed->port;
    bool sameHost = firstHost == parsed->host + ":" + parsed->port;
    out->reset();
    out->status = 0;
    response.headers.clear();
    http::Request request{method, parsed->target, {{"User-Agent", "ferry/0.1"}}, ""};
    if (!accept.empty()) request.headers.emplace_back("Accept", accept);
    if (withAuthorization && sameHost && !authorization_.empty()) request.headers.emplace_back("Authorization", authorization_);
    http::TlsOptions tls;
    tls.caFile = options_.caFile;
    auto connection = http::Connection::open(*parsed, tls, std::chrono::seconds(30));
    if (!connection) return fail(Error{EIO, fmt::format("{} {}: {}", method, url, connection.error().message)});
    http::BodySink body = [out](std::string_view piece) { return out->write(piece.data(), piece.size()); };
    http::Connection::Options how;
    how.idleTimeout = std::chrono::seconds(options_.timeoutSeconds);
    how.sink = &body;
    how.onHeader = [out](const http::Response& head) { out->status = head.status; };
    auto answer = (*connection)->exchange(request, how);
    if (out->overLimit) return fail(Error{EFBIG, fmt::format("{} {}: response larger than expected", method, url)});
    if (out->writeFailed) return failErrno(fmt::format("{} {}: write", method, url));
    if (!answer) return fail(Error{EIO, fmt::format("{} {}: {}", method, url, answer.error().message)});
    response.status = answer->status;
    response.headers = std::move(answer->headers);
    bool redirect = response.status == 301 || response.status == 302 || response.status == 303 ||
                    response.status == 307 || response.status == 308;
    auto location = response.headers.find("location");
    if (!redirect || location == response.headers.end()) return response;
    if (redirects == 5) return fail(Error{EIO, fmt::format("{} {}: more than 5 redirects", method, firstUrl)});
    url = resolveLocation(url, location->second);
  }
}

Status RegistryClient::authenticate(const std::string& challenge) {
  auto [scheme, params] = parseChallenge(challenge);
  if (scheme == "basic") {
    if (credentials_.username.empty() && credentials_.password.empty())
      return fail(Error{EACCES, fmt::format("{} requires credentials (basic auth) and none were found", ref_.registry)});
    authorization_ = "Basic " + api::base64Encode(credentials_.username + ":" + credentials_.password);
    return {};
  }
  if (scheme != "bearer") return fail(Error{EACCES, fmt::format("unsupported authentication scheme \"{}\"", scheme)});
  auto realm = params["realm"];
  if (realm.rfind("https://", 0) != 0 && realm.rfind("http://", 0) != 0)
    return fail(Error{EACCES, fmt::format("bearer challenge without a usable realm: \"{}\"", challenge)});
  std::string scope = params.count("scope") ? params["scope"] : fmt::format("repository:{}:pull", ref_.repository);
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + "scope=" + urlEncode(scope);
  if (params.count("service")) url += "&service=" + urlEncode(params["service"]);
  // The token endpoint takes the registry credentials as basic auth (anonymous without).
  std::string saved = std::move(authorization_);
  if (!credentials_.username.empty())
    authorization_ = "Basic " + api::base64Encode(credentials_.username + ":" + credentials_.password);
  else
    authorization_.clear();
  auto response = send("GET", url, "application/json", nullptr, true);
  authorization_.clear();
  if (!response) return fail(std::move(response.error()).wrap("token"));
  if (response->status != 200)
    return fail(Error{EACCES, fmt::format("token endpoint {} answered {}", realm, response->status)});
  auto doc = nlohmann::json::parse(response->body, nullptr, false);
  std::string token;
  if (doc.is_object()) {
    if (doc.contains("token") && doc["token"].is_string()) token = doc["token"].get<std::string>();
    else if (doc.contains("access_token") && doc["access_token"].is_string()) token = doc["access_token"].get<std::string>();
  }
  if (token.empty()) return fail(Error{EACCES, fmt::format("token endpoint {} gave no token", realm)});
  authorization_ = "Bearer " + token;
  return {};
}

Result<RegistryClient::Response> RegistryClient::sendAuthenticated(const std::string& method, const std::string& url,
                                                                   const std::string& accept, Sink* sink) {
  auto response = send(method, url, accept, sink, true);
  if (!response) return response;
  if (response->status != 401) return response;
  auto challenge = response->headers.find("www-authenticate");
  if (challenge == response->headers.end())
    return fail(Error{EACCES, fmt::format("{} {}: 401 without WWW-Authenticate", method, url)});
  if (auto s = authenticate(challenge->second); !s) return fail(std::move(s.error()).wrap(fmt::format("{} {}", method, url)));
  return send(method, url, accept, sink, true);
}

namespace {
Error httpError(const std::string& what, long status, const std::string& body) {
  int code = status == 404 ? ENOENT : (status == 401 || status == 403) ? EACCES : EIO;
  std::string detail = body.substr(0, 300);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  return Error{code, fmt::format("{}: HTTP {}{}{}", what, status, detail.empty() ? "" : ": ", detail)};
}
}  // namespace

Result<std::string> RegistryClient::manifestDigest(const std::string& selector) {
  std::string url = fmt::format("{}/v2/{}/manifests/{}", baseUrl_, ref_.repository, selector);
  auto response = sendAuthenticated("HEAD", url, kManifestAccept, nullptr);
  if (!response) return fail(response.error());
  if (response->status != 200) return fail(httpError("manifest " + ref_.normalized(), response->status, ""));
  auto it = response->headers.find("docker-content-digest");
  if (it == response->headers.end() || !isSha256Digest(it->second)) return std::string();
  return it->second;
}

Result<FetchedManifest> RegistryClient::fetchManifest(const std::string& selector) {
  std::string url = fmt::format("{}/v2/{}/manifests/{}", baseUrl_, ref_.repository, selector);
  auto response = sendAuthenticated("GET", url, kManifestAccept, nullptr);
  if (!response) return fail(response.error());
  if (response->status != 200) return fail(httpError("manifest " + ref_.name() + ":" + selector, response->status, response->body));
  FetchedManifest m;
  m.body = std::move(response->body);
  m.digest = digestOf(m.body);
  if (selector.rfind("sha256:", 0) == 0 && m.digest != selector)
    return fail(Error{EIO, fmt::format("manifest {}: content has digest {}", selector, m.digest)});
  auto doc = nlohmann::json::parse(m.body, nullptr, false);
  if (!doc.is_object()) return fail(Error{EIO, fmt::format("manifest {}: not a JSON object", selector)});
  if (doc.contains("mediaType") && doc["mediaType"].is_string()) m.mediaType = doc["mediaType"].get<std::string>();
  if (m.mediaType.empty()) {
    auto ct = response->headers.find("content-type");
    if (ct != response->headers.end()) m.mediaType = trim(ct->second.substr(0, ct->second.find(';')));
  }
  return m;
}

Status RegistryClient::fetchBlob(const std::string& digest, std::int64_t expectedSize, const std::string& path) {
  if (!isSha256Digest(digest)) return fail(Error::invalid(fmt::format("blob digest \"{}\" is not sha256", digest)));
  std::string url = fmt::format("{}/v2/{}/blobs/{}", baseUrl_, ref_.repository, digest);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return failErrno("create " + path);
  std::string errorBody;
  Sha256 hash;
  Sink sink;
  sink.fd = fd;
  sink.hash = &hash;
  sink.text = &errorBody;
  sink.limit = expectedSize >= 0 ? expectedSize : (std::int64_t{64} << 30);
  auto response = sendAuthenticated("GET", url, "", &sink);
  // The 401 round wrote nothing to the file (error bodies go to memory), so the hash is of
  // the final response only.
  ::close(fd);
  if (!response) return fail(std::move(response.error()).wrap("blob " + digest));
  if (response->status != 200) return fail(httpError("blob " + digest, response->status, errorBody));
  if (expectedSize >= 0 && sink.written != expectedSize)
    return fail(Error{EIO, fmt::format("blob {}: got {} bytes, manifest says {}", digest, sink.written, expectedSize)});
  std::string actual = hash.digest();
  if (actual != digest) return fail(Error{EIO, fmt::format("blob {}: content has digest {}", digest, actual)});
  return {};
}

}  // namespace ferry::images
