#include "agent/core/api_client.h"

#include "api/base64.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <mutex>
#include <sstream>

namespace ferry::agent {
namespace {

std::once_flag gCurlInit;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Undecodable data reads as empty: the consumer then reports what is missing.
std::string base64Decode(const std::string& in) { return api::base64Decode(in).value_or(std::string()); }

// Kubeconfig fields come either inline (`*-data`, base64) or as file paths.
std::string dataOrFile(const YAML::Node& node, const std::string& dataKey, const std::string& fileKey) {
  if (node[dataKey]) return base64Decode(node[dataKey].as<std::string>());
  if (node[fileKey]) return readFile(node[fileKey].as<std::string>());
  return {};
}

int errnoForHttp(long status, const api::Json& body) {
  switch (status) {
    case 404: return ENOENT;
    case 409: return body.value("reason", std::string()) == "AlreadyExists" ? EEXIST : ECANCELED;
    case 410: return ERANGE;
    case 401:
    case 403: return EACCES;
    case 422: return EINVAL;
    default: return EIO;
  }
}

size_t appendToString(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct CurlSlist {
  curl_slist* list = nullptr;
  ~CurlSlist() { curl_slist_free_all(list); }
  void add(const std::string& s) { list = curl_slist_append(list, s.c_str()); }
};

}  // namespace

Result<Credentials> loadKubeconfig(const std::string& path) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    Credentials c;
    YAML::Node cluster = root["clusters"][0]["cluster"];
    YAML::Node user = root["users"][0]["user"];
    if (!cluster || !cluster["server"]) return fail(EINVAL, "kubeconfig " + path + ": clusters[0].cluster.server missing");
    c.server = cluster["server"].as<std::string>();
    c.caPem = dataOrFile(cluster, "certificate-authority-data", "certificate-authority");
    if (user) {
      c.clientCertPem = dataOrFile(user, "client-certificate-data", "client-certificate");
      c.clientKeyPem = dataOrFile(user, "client-key-data", "client-key");
      if (user["token"]) c.bearerToken = user["token"].as<std::string>();
    }
    return c;
  } catch (const YAML::Exception& e) {
    return fail(EINVAL, "kubeconfig " + path + ": " + e.what());
  }
}

ApiClient::ApiClient(Credentials credentials) : credentials_(std::move(credentials)) {
  std::call_once(gCurlInit, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

ApiClient::~ApiClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void ApiClient::configureHandle(void* handle, const std::string& url, void* headerList) {
  auto* h = static_cast<CURL*>(handle);
  auto* headers = static_cast<CurlSlist*>(headerList);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  auto blob = [](const std::string& s) {
    curl_blob b{const_cast<char*>(s.data()), s.size(), CURL_BLOB_COPY};
    return b;
  };
  std::lock_guard lock(mu_);  // the blobs are copied by curl before it is released
  if (!credentials_.caPem.empty()) {
    curl_blob ca = blob(credentials_.caPem);
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (!credentials_.clientCertPem.empty()) {
    curl_blob cert = blob(credentials_.clientCertPem);
    curl_blob key = blob(credentials_.clientKeyPem);
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (!credentials_.bearerToken.empty()) headers->add("Authorization: Bearer " + credentials_.bearerToken);
}

void* ApiClient::takeHandle(uint64_t& generation) {
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      // Options of the previous request (body, method, headers) must not leak into this
      // one; a reset keeps the handle's open connections and TLS session cache.
      curl_easy_reset(static_cast<CURL*>(h));
      return h;
    }
  }
  return curl_easy_init();
}

void ApiClient::returnHandle(void* h, uint64_t generation, bool healthy) {
  {
    std::lock_guard lock(mu_);
    if (healthy && generation == generation_ && idle_.size() < kMaxIdleConnections) {
      idle_.push_back(h);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(h));
}

void ApiClient::setClientCertificate(const std::string& certPem, const std::string& keyPem) {
  std::vector<void*> stale;
  {
    std::lock_guard lock(mu_);
    credentials_.clientCertPem = certPem;
    credentials_.clientKeyPem = keyPem;
    // Connections authenticated with the old certificate are closed, not reused.
    ++generation_;
    stale.swap(idle_);
  }
  for (void* h : stale) curl_easy_cleanup(static_cast<CURL*>(h));
}

Credentials ApiClient::credentials() const {
  std::lock_guard lock(mu_);
  return credentials_;
}

Result<api::Json> ApiClient::request(const std::string& method, const std::string& path, const std::string* body,
                                     const std::string& contentType) {
  std::string what = method + " " + path;
  for (int attempt = 0;; ++attempt) {
    uint64_t generation = 0;
    CURL* h = static_cast<CURL*>(takeHandle(generation));
    if (h == nullptr) return fail(ENOMEM, what + ": curl_easy_init failed");
    CurlSlist headers;
    configureHandle(h, credentials_.server + path, &headers);
    std::string response;
    headers.add("Accept: application/json");
    if (body != nullptr) {
      headers.add("Content-Type: " + contentType);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, appendToString);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    // A silent dead peer (server host gone) is noticed on idle pooled connections too.
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    long newConnections = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &newConnections);
    returnHandle(h, generation, rc == CURLE_OK);
    if (rc != CURLE_OK) {
      // A pooled connection the server closed while idle (a server restart, its idle
      // timeout) fails at once with no reply: retry once on a new connection (libcurl
      // retries some of these itself). Other failures are the caller's to handle.
      bool reusedAndDead = newConnections == 0 && (rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR);
      if (attempt == 0 && reusedAndDead) continue;
      return fail(ECONNREFUSED, what + ": " + curl_easy_strerror(rc));
    }
    api::Json parsed = api::Json::parse(response, nullptr, false);
    if (status >= 200 && status < 300) {
      if (parsed.is_discarded()) return fail(EIO, what + ": response is not JSON");
      return parsed;
    }
    if (parsed.is_discarded()) parsed = api::Json::object();
    return fail(errnoForHttp(status, parsed),
                fmt::format("{}: {} {}", what, status, parsed.value("message", response.substr(0, 200))));
  }
}

Result<api::Json> ApiClient::get(const std::string& path) { return request("GET", path, nullptr, ""); }

Result<api::Json> ApiClient::post(const std::string& path, const api::Json& body) {
  std::string text = body.dump();
  return request("POST", path, &text, "application/json");
}

Result<api::Json> ApiClient::put(const std::string& path, const api::Json& body) {
  std::string text = body.dump();
  return request("PUT", path, &text, "application/json");
}

Result<api::Json> ApiClient::patch(const std::string& path, const api::Json& body, const std::string& contentType) {
  std::string text = body.dump();
  return request("PATCH", path, &text, contentType);
}

Result<api::Json> ApiClient::remove(const std::string& path, const api::Json& body) {
  std::string text = body.dump();
  return request("DELETE", path, &text, "application/json");
}

namespace {

struct WatchState {
  std::string buffer;
  const std::function<void(const std::string&, const api::Json&)>* onEvent;
  const std::atomic<bool>* stop;
  int errorCode = 0;
  std::string errorMessage;
  std::string body;  // for non-2xx replies
  long status = 0;
};

size_t onWatchData(char* data, size_t size, size_t count, void* user) {
  auto* st = static_cast<WatchState*>(user);
  st->buffer.append(data, size * count);
  size_t start = 0;
  for (size_t nl; (nl = st->buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(st->buffer.data() + start, nl - start);
    if (line.empty()) continue;
    api::Json event = api::Json::parse(line, nullptr, false);
    if (event.is_discarded() || !event.is_object()) {
      st->body.append(line);
      continue;
    }
    std::string type = event.value("type", std::string());
    if (type.empty()) {  // a Status reply rather than an event
      st->body.append(line);
      continue;
    }
    if (type == "ERROR") {
      const api::Json& obj = event["object"];
      st->errorCode = obj.value("code", 0) == 410 ? ERANGE : EIO;
      st->errorMessage = obj.value("message", std::string("watch error"));
      return 0;  // abort the transfer
    }
    (*st->onEvent)(type, event.value("object", api::Json::object()));
  }
  st->buffer.erase(0, start);
  return size * count;
}

int onWatchProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<WatchState*>(user)->stop->load() ? 1 : 0;
}

}  // namespace

Status ApiClient::watch(const std::string& path,
                        const std::function<void(const std::string&, const api::Json&)>& onEvent,
                        const std::atomic<bool>& stop) {
  CurlSlist headers;
  CURL* h = curl_easy_init();
  if (h == nullptr) return fail(ENOMEM, "watch " + path + ": curl_easy_init failed");
  configureHandle(h, credentials_.server + path, &headers);
  WatchState st;
  st.onEvent = &onEvent;
  st.stop = &stop;
  headers.add("Accept: application/json");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, onWatchData);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, onWatchProgress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
  // A silent stream is normal; TCP keepalive notices a dead server.
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st.status);
  curl_easy_cleanup(h);
  if (st.errorCode != 0) return fail(st.errorCode, "watch " + path + ": " + st.errorMessage);
  if (stop) return {};
  if (st.status == 410) return fail(ERANGE, "watch " + path + ": 410 Gone");
  if (st.status >= 300) return fail(errnoForHttp(st.status, api::Json::object()),
                                    fmt::format("watch {}: {} {}", path, st.status, st.body.substr(0, 200)));
  if (rc != CURLE_OK) return fail(ECONNRESET, "watch " + path + ": " + curl_easy_strerror(rc));
  return {};
}

}  // namespace ferry::agent
