#include "agent/core/api_client.h"

#include "api/base64.h"
#include "controlplane-lite/http_client.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <mutex>
#include <sstream>

namespace ferry::agent {
namespace {

using namespace std::chrono_literals;

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

ApiClient::ApiClient(Credentials credentials)
    : credentials_(std::move(credentials)), url_(http::parseUrl(credentials_.server)) {
  if (url_) targetPrefix_ = url_->target;
  while (!targetPrefix_.empty() && targetPrefix_.back() == '/') targetPrefix_.pop_back();
}

ApiClient::~ApiClient() = default;

Result<std::unique_ptr<http::Connection>> ApiClient::connect() {
  if (!url_) return fail(url_.error());
  http::TlsOptions tls;
  {
    std::lock_guard lock(mu_);
    tls.caPem = credentials_.caPem;
    tls.clientCertPem = credentials_.clientCertPem;
    tls.clientKeyPem = credentials_.clientKeyPem;
  }
  return http::Connection::open(*url_, tls, 10s);
}

Result<std::unique_ptr<http::Connection>> ApiClient::takeConnection(uint64_t& generation, bool& reused) {
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      reused = true;
      return connection;
    }
  }
  reused = false;
  return connect();
}

void ApiClient::returnConnection(std::unique_ptr<http::Connection> connection, uint64_t generation) {
  std::lock_guard lock(mu_);
  if (connection->reusable() && generation == generation_ && idle_.size() < kMaxIdleConnections)
    idle_.push_back(std::move(connection));
}

void ApiClient::setClientCertificate(const std::string& certPem, const std::string& keyPem) {
  std::vector<std::unique_ptr<http::Connection>> stale;
  {
    std::lock_guard lock(mu_);
    credentials_.clientCertPem = certPem;
    credentials_.clientKeyPem = keyPem;
    // Connections authenticated with the old certificate are closed, not reused.
    ++generation_;
    stale.swap(idle_);
  }
}

Credentials ApiClient::credentials() const {
  std::lock_guard lock(mu_);
  return credentials_;
}

Result<api::Json> ApiClient::request(const std::string& method, const std::string& path, const std::string* body,
                                     const std::string& contentType) {
  std::string what = method + " " + path;
  http::Request req{method, targetFor(path), {{"Accept", "application/json"}}, body ? *body : std::string()};
  if (body != nullptr) req.headers.emplace_back("Content-Type", contentType);
  if (!credentials_.bearerToken.empty()) req.headers.emplace_back("Authorization", "Bearer " + credentials_.bearerToken);
  for (int attempt = 0;; ++attempt) {
    uint64_t generation = 0;
    bool reused = false;
    auto connection = takeConnection(generation, reused);
    if (!connection) return fail(ECONNREFUSED, what + ": " + connection.error().message);
    auto response = (*connection)->exchange(req, {.timeout = 60s});
    returnConnection(std::move(*connection), generation);
    if (!response) {
      // A pooled connection the server closed while idle (a server restart, its idle
      // timeout) fails at once with no reply: retry once on a new connection. Other
      // failures are the caller's to handle.
      if (attempt == 0 && reused && response.error().code == ECONNRESET) continue;
      return fail(ECONNREFUSED, response.error().message);
    }
    int status = response->status;
    api::Json parsed = api::Json::parse(response->body, nullptr, false);
    if (status >= 200 && status < 300) {
      if (parsed.is_discarded()) return fail(EIO, what + ": response is not JSON");
      return parsed;
    }
    if (parsed.is_discarded()) parsed = api::Json::object();
    return fail(errnoForHttp(status, parsed),
                fmt::format("{}: {} {}", what, status, parsed.value("message", response->body.substr(0, 200))));
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

// Splits the stream into lines and hands each event on; the rest (a Status reply rather
// than events) is kept as the body.
struct WatchState {
  std::string buffer;
  const std::function<void(const std::string&, const api::Json&)>* onEvent;
  int errorCode = 0;
  std::string errorMessage;
  std::string body;  // for non-2xx replies

  // False ends the stream (an ERROR event).
  bool feed(std::string_view data) {
    buffer.append(data);
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(buffer.data() + start, nl - start);
      if (line.empty()) continue;
      api::Json event = api::Json::parse(line, nullptr, false);
      std::string type = event.is_object() ? event.value("type", std::string()) : std::string();
      if (type.empty()) {
        body.append(line);
        continue;
      }
      if (type == "ERROR") {
        const api::Json& obj = event["object"];
        errorCode = obj.value("code", 0) == 410 ? ERANGE : EIO;
        errorMessage = obj.value("message", std::string("watch error"));
        return false;
      }
      (*onEvent)(type, event.value("object", api::Json::object()));
    }
    buffer.erase(0, start);
    return true;
  }
};

}  // namespace

Status ApiClient::watch(const std::string& path,
                        const std::function<void(const std::string&, const api::Json&)>& onEvent,
                        const std::atomic<bool>& stop) {
  // A watch holds a connection of its own for its whole life; a silent stream is normal
  // (TCP keepalive notices a dead server).
  auto connection = connect();
  if (!connection) return fail(ECONNRESET, "watch " + path + ": " + connection.error().message);
  WatchState st;
  st.onEvent = &onEvent;
  http::Request req{"GET", targetFor(path), {{"Accept", "application/json"}}, ""};
  if (!credentials_.bearerToken.empty()) req.headers.emplace_back("Authorization", "Bearer " + credentials_.bearerToken);
  http::BodySink sink = [&st](std::string_view piece) { return st.feed(piece); };
  auto response = (*connection)->exchange(req, {.sink = &sink, .stop = &stop});
  if (st.errorCode != 0) return fail(st.errorCode, "watch " + path + ": " + st.errorMessage);
  if (stop) return {};
  if (!response) return fail(ECONNRESET, "watch " + path + ": " + response.error().message);
  st.body.append(st.buffer);
  if (response->status == 410) return fail(ERANGE, "watch " + path + ": 410 Gone");
  if (response->status >= 300)
    return fail(errnoForHttp(response->status, api::Json::object()),
                fmt::format("watch {}: {} {}", path, response->status, st.body.substr(0, 200)));
  return {};
}

}  // namespace ferry::agent
