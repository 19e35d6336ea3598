#include "agent/images/registry_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "agent/images/content_digest.h"

namespace ferry::images {
namespace {

constexpr std::int64_t kMaxManifestBytes = 8 << 20;

const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

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

std::string base64Encode(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
  }
  return out;
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
};

RegistryClient::RegistryClient(const RegistryOptions& options, ImageReference ref, Credentials credentials)
    : options_(options), ref_(std::move(ref)), credentials_(std::move(credentials)) {
  initCurlOnce();
  std::string host = ref_.registry == "docker.io" ? "registry-1.docker.io" : ref_.registry;
  bool plain = std::find(options_.plainHttpRegistries.begin(), options_.plainHttpRegistries.end(), ref_.registry) !=
                   options_.plainHttpRegistries.end() ||
               (options_.plainHttpForLoopback && isLoopbackHost(ref_.registry));
  baseUrl_ = (plain ? "http://" : "https://") + host;
}

Result<RegistryClient::Response> RegistryClient::send(const std::string& method, const std::string& url,
                                                      const std::string& accept, Sink* sink, bool withAuthorization) {
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return fail(Error{ENOMEM, "curl_easy_init failed"});
  Response response;
  Sink textSink;
  textSink.text = &response.body;
  Sink* out = sink ? sink : &textSink;
  out->reset();

  struct HeaderState {
    Response* response;
    Sink* sink;
  } headerState{&response, out};

  auto onHeader = [](char* data, size_t size, size_t n, void* userdata) -> size_t {
    auto* st = static_cast<HeaderState*>(userdata);
    std::string line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
      // A new response (after a redirect or 100-continue): forget the previous headers.
      st->response->headers.clear();
      auto space = line.find(' ');
      st->sink->status = space == std::string::npos ? 0 : std::strtol(line.c_str() + space + 1, nullptr, 10);
      return size * n;
    }
    auto colon = line.find(':');
    if (colon != std::string::npos) st->response->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
    return size * n;
  };
  auto onBody = [](char* data, size_t size, size_t n, void* userdata) -> size_t {
    auto* s = static_cast<Sink*>(userdata);
    size_t len = size * n;
    // Error bodies and redirect bodies are small and go to memory, never into the blob file.
    bool toFile = s->fd >= 0 && s->status >= 200 && s->status < 300;
    if (!toFile) {
      if (s->textWritten + static_cast<std::int64_t>(len) > kMaxManifestBytes) {
        s->overLimit = true;
        return 0;
      }
      s->textWritten += static_cast<std::int64_t>(len);
      if (s->text) s->text->append(data, len);
      return len;
    }
    if (s->written + static_cast<std::int64_t>(len) > s->limit) {
      s->overLimit = true;
      return 0;
    }
    s->written += static_cast<std::int64_t>(len);
    s->hash->update(data, len);
    size_t done = 0;
    while (done < len) {
      ssize_t w = ::write(s->fd, data + done, len - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        s->writeFailed = true;
        return 0;
      }
      done += static_cast<size_t>(w);
    }
    return len;
  };

  struct curl_slist* headers = nullptr;
  if (!accept.empty()) headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
  if (withAuthorization && !authorization_.empty())
    headers = curl_slist_append(headers, ("Authorization: " + authorization_).c_str());
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ferry/0.1");
  if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
  }
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);  // blob storage redirects; curl drops Authorization across hosts
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.timeoutSeconds));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!options_.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.caFile.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, +onHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &headerState);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +onBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  char errorBuffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errorBuffer);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (out->overLimit) return fail(Error{EFBIG, fmt::format("{} {}: response larger than expected", method, url)});
  if (out->writeFailed) return failErrno(fmt::format("{} {}: write", method, url));
  if (rc != CURLE_OK)
    return fail(Error{EIO, fmt::format("{} {}: {}", method, url, errorBuffer[0] ? errorBuffer : curl_easy_strerror(rc))});
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

Status RegistryClient::authenticate(const std::string& challenge) {
  auto [scheme, params] = parseChallenge(challenge);
  if (scheme == "basic") {
    if (credentials_.username.empty() && credentials_.password.empty())
      return fail(Error{EACCES, fmt::format("{} requires credentials (basic auth) and none were found", ref_.registry)});
    authorization_ = "Basic " + base64Encode(credentials_.username + ":" + credentials_.password);
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
    authorization_ = "Basic " + base64Encode(credentials_.username + ":" + credentials_.password);
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
