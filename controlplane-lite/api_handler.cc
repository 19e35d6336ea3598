#include "controlplane-lite/api_handler.h"

#include "api/metrics.h"
#include "api/log.h"
#include "api/managed_fields.h"
#include "controlplane-lite/discovery.h"
#include "controlplane-lite/node_proxy.h"
#include "controlplane-lite/object_policy.h"
#include "controlplane-lite/protobuf_body.h"
#include "controlplane-lite/tables.h"

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>

namespace ferry::cp {

using api::Json;

namespace {

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < path.size()) {
    auto slash = path.find('/', start);
    std::string seg = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!seg.empty()) out.push_back(seg);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

HttpResponse jsonResponse(int status, const Json& body, const std::string& contentType = "application/json") {
  HttpResponse r;
  r.status = status;
  r.contentType = contentType;
  r.body = body.dump();
  return r;
}

bool wantsTable(const HttpRequest& req) { return req.header("accept").find("as=Table") != std::string::npos; }

TableObjects tableInclude(const HttpRequest& req) {
  std::string inc = req.param("includeObject");
  if (inc == "None") return TableObjects::None;
  if (inc == "Object") return TableObjects::Full;
  return TableObjects::Metadata;
}

std::string listKind(const Resource& r) { return r.kind + "List"; }

bool isTrue(const std::string& v) { return v == "true" || v == "1" || v == "True"; }

std::string reasonFor(int code) {
  switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 406: return "NotAcceptable";
    case 409: return "Conflict";
    case 410: return "Expired";
    case 413: return "RequestEntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 501: return "NotImplemented";
    case 503: return "ServiceUnavailable";
    default: return "InternalError";
  }
}

std::string mediaType(const std::string& contentType) {
  std::string t = contentType.substr(0, contentType.find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  return t;
}

// A queue between a watch sink (store thread) and the HTTP stream (connection thread).
struct WatchChannel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> lines;
  std::string lastResourceVersion;
  bool overflow = false;
  std::string endMessage;  // set with overflow when the watch ended for another reason (ERROR from the cache)
  std::unique_ptr<ObjectWatch> watch;
};

}  // namespace

HttpResponse statusResponse(int code, const std::string& reason, const std::string& message) {
  Json st = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
             {"message", message}, {"reason", reason}, {"code", code}};
  return jsonResponse(code, st);
}

HttpResponse statusError(const Error& error, const Resource* r, const std::string& name) {
  int code = 500;
  switch (error.code) {
    case ENOENT: code = 404; break;
    case EEXIST: code = 409; break;
    case ECANCELED: code = 409; break;
    case EALREADY: code = 409; break;
    case EINVAL: code = 422; break;
    case EBADMSG: code = 400; break;
    case EACCES: code = 403; break;
    case ERANGE: code = 410; break;
    case ENOTSUP: code = 415; break;
    case EMSGSIZE: code = 413; break;
    case ENOSYS: code = 501; break;
    case EAGAIN: code = 503; break;
    default: code = 500;
  }
  std::string reason = reasonFor(code);
  if (error.code == EEXIST) reason = "AlreadyExists";
  if (error.code == ERANGE) reason = "Expired";
  std::string message = error.message;
  Json details = Json::object();
  if (!name.empty()) details["name"] = name;
  if (r) {
    if (!r->group.empty()) details["group"] = r->group;
    details["kind"] = r->plural;
  }
  if (code == 422) {
    std::string summary;
    auto causes = causesFromInvalidError(error.message, &summary);
    Json cs = Json::array();
    std::string list;
    for (const auto& c : causes) {
      cs.push_back({{"reason", c.reason}, {"message", c.message}, {"field", c.field}});
      list += (list.empty() ? "" : ", ") + c.field + ": " + c.message;
    }
    message = causes.empty() ? summary : summary + ": " + (causes.size() > 1 ? "[" + list + "]" : list);
    if (r) details["kind"] = r->kind;
    if (!cs.empty()) details["causes"] = cs;
  }
  if (code == 500) log::warn("internal error: {}", error.message);
  Json st = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
             {"message", message}, {"reason", reason}, {"code", code}};
  if (!details.empty()) st["details"] = details;
  return jsonResponse(code, st);
}

ResourcePath parseResourcePath(const std::string& path) {
  ResourcePath p;
  auto segs = splitPath(path);
  std::size_t i = 0;
  if (segs.size() >= 2 && segs[0] == "api") {
    p.version = segs[1];
    i = 2;
  } else if (segs.size() >= 3 && segs[0] == "apis") {
    p.group = segs[1];
    p.version = segs[2];
    i = 3;
  } else {
    return p;
  }
  p.valid = true;
  if (i < segs.size() && segs[i] == "watch") {
    p.legacyWatch = true;
    ++i;
  }
  std::vector<std::string> rest(segs.begin() + static_cast<long>(i), segs.end());
  if (rest.empty()) {
    p.groupVersionOnly = true;
    return p;
  }
  if (rest[0] == "namespaces" && rest.size() >= 3) {
    const Resource* inner = findResource(p.group, p.version, rest[2]);
    if (inner && inner->namespaced) {
      p.ns = rest[1];
      p.plural = rest[2];
      if (rest.size() > 3) p.name = rest[3];
      if (rest.size() > 4) p.subresource = rest[4];
      if (rest.size() > 5) p.valid = false;
      return p;
    }
  }
  p.plural = rest[0];
  if (rest.size() > 1) p.name = rest[1];
  if (rest.size() > 2) p.subresource = rest[2];
  if (rest.size() > 3) p.valid = false;
  return p;
}

ApiHandler::ApiHandler(Registry& registry, ApiHandlerOptions options, NodeConnector* nodes)
    : registry_(registry), options_(std::move(options)), nodes_(nodes) {}

HttpResponse ApiHandler::handle(HttpRequest& req) {
  const std::string& path = req.path;
  Identity who = authenticate(req, options_.joinToken);
  if (who.role == Role::Unknown) return statusResponse(401, "Unauthorized", "Unauthorized");

  // Public endpoints.
  if (path == "/healthz" || path == "/livez" || path == "/readyz" || path.rfind("/healthz/", 0) == 0 ||
      path.rfind("/livez/", 0) == 0 || path.rfind("/readyz/", 0) == 0) {
    HttpResponse r;
    r.contentType = "text/plain; charset=utf-8";
    r.body = "ok";
    return r;
  }
  if (path == "/version" || path == "/version/") return jsonResponse(200, versionDocument());
  if (path == "/cacerts") {
    HttpResponse r;
    r.contentType = "application/x-pem-file";
    r.body = options_.caPem;
    return r;
  }
  if (who.role == Role::Anonymous) return statusResponse(401, "Unauthorized", "Unauthorized");
  if (path == kNodeCertificatePath || who.role == Role::Bootstrap) {
    RequestAttributes endpoint;
    endpoint.verb = req.method == "POST" ? "create" : "get";
    endpoint.path = path;
    auto decision = authorize(who, endpoint);
    if (!decision.allowed)
      return statusResponse(403, "Forbidden", fmt::format("User \"{}\" cannot {} path \"{}\": {}", who.user,
                                                          endpoint.verb, path, decision.reason));
    if (!options_.serveNodeCertificate)
      return statusResponse(404, "NotFound", "the server could not find the requested resource");
    return options_.serveNodeCertificate(req, who);
  }
  if (path == "/metrics") {  // the whole process's metrics (api/metrics.h), for any authenticated user
    HttpResponse r;
    r.contentType = "text/plain; version=0.0.4";
    r.body = metrics::registry().render();
    return r;
  }

  std::string accept = req.header("accept");
  if (path == "/api" || path == "/api/" || path == "/apis" || path == "/apis/") {
    bool core = path.rfind("/api", 0) == 0 && path.rfind("/apis", 0) != 0;
    if (accept.find("as=APIGroupDiscoveryList") != std::string::npos) {
      bool v2 = accept.find("v=v2;") != std::string::npos || accept.find("v=v2,") != std::string::npos ||
                (accept.find("v=v2") != std::string::npos && accept.find("v=v2beta1") == std::string::npos);
      if (v2) return jsonResponse(200, aggregatedDiscovery(core), kAggregatedDiscoveryContentType);
      return jsonResponse(200, aggregatedDiscovery(core, "apidiscovery.k8s.io/v2beta1"), kAggregatedDiscoveryContentTypeV2beta1);
    }
    return jsonResponse(200, core ? legacyApiVersions() : legacyApiGroupList());
  }
  if (path == "/openapi/v3" || path == "/openapi/v3/") return jsonResponse(200, openApiV3Root());
  if (path == "/openapi/v2") {
    // An empty OpenAPI v2 document (protobuf of an empty message): older kubectl
    // validates against v2 and skips kinds it finds no schema for.
    HttpResponse r;
    r.contentType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    return r;
  }
  if (path.rfind("/openapi/v3/", 0) == 0) {
    auto segs = splitPath(path.substr(std::string("/openapi/v3").size()));
    std::optional<Json> doc;
    if (segs.size() == 2 && segs[0] == "api") doc = openApiV3GroupVersion("", segs[1]);
    if (segs.size() == 3 && segs[0] == "apis") doc = openApiV3GroupVersion(segs[1], segs[2]);
    if (!doc) return statusResponse(404, "NotFound", "the server could not find the requested resource");
    return jsonResponse(200, *doc);
  }
  if (path.rfind("/apis/", 0) == 0) {
    auto segs = splitPath(path);
    if (segs.size() == 2) {
      auto g = legacyApiGroup(segs[1]);
      if (!g) return statusResponse(404, "NotFound", "the server could not find the requested resource");
      return jsonResponse(200, *g);
    }
  }

  ResourcePath rp = parseResourcePath(path);
  if (!rp.valid) return statusResponse(404, "NotFound", "the server could not find the requested resource");
  if (rp.groupVersionOnly) {
    auto list = legacyResourceList(rp.group, rp.version);
    if (!list) return statusResponse(404, "NotFound", "the server could not find the requested resource");
    return jsonResponse(200, *list);
  }
  const Resource* r = findResource(rp.group, rp.version, rp.plural);
  if (!r) return statusResponse(404, "NotFound", "the server could not find the requested resource");
  if (!r->namespaced && !rp.ns.empty()) return statusResponse(404, "NotFound", "the server could not find the requested resource");
  if (!rp.subresource.empty() &&
      std::find(r->subresources.begin(), r->subresources.end(), rp.subresource) == r->subresources.end())
    return statusResponse(404, "NotFound", "the server could not find the requested resource");

  const std::string& m = req.method;
  if ((m == "POST" || m == "PUT" || m == "PATCH") && req.header("content-type").find("protobuf") != std::string::npos) {
    // kubectl's typed create commands send protobuf and do not fall back to JSON on 415:
    // decode the kinds they make, then handle the body as JSON (replies stay JSON).
    if (m == "PATCH" || mediaType(req.header("content-type")) != "application/vnd.kubernetes.protobuf")
      return statusResponse(415, "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted media types include: "
                            "application/json, application/yaml, application/vnd.kubernetes.protobuf");
    auto decoded = decodeProtobufObject(req.body);
    if (!decoded) {
      if (decoded.error().code == ENOTSUP) return statusResponse(415, "UnsupportedMediaType", decoded.error().message);
      return statusResponse(400, "BadRequest", decoded.error().message);
    }
    req.body = decoded->dump();
    req.headers["content-type"] = "application/json";
  }
  bool watching = rp.legacyWatch || isTrue(req.param("watch"));
  RequestAttributes attrs;
  attrs.resourceRequest = true;
  attrs.group = r->group;
  attrs.resource = r->plural;
  attrs.subresource = rp.subresource;
  attrs.ns = rp.ns;
  attrs.name = rp.name;
  attrs.path = path;
  if (m == "GET" || m == "HEAD") attrs.verb = rp.name.empty() ? (watching ? "watch" : "list") : "get";
  else if (m == "POST") attrs.verb = "create";
  else if (m == "PUT") attrs.verb = "update";
  else if (m == "PATCH") attrs.verb = "patch";
  else if (m == "DELETE") attrs.verb = rp.name.empty() ? "deletecollection" : "delete";
  else return statusResponse(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  if (rp.subresource == "exec" && m == "GET") attrs.verb = "create";
  if (!r->namespaced) attrs.ns.clear();
  // A create names its object in the body: authorize that name, so that a joining
  // node may create its own Node and Lease (NodeRestriction), and nothing else.
  if (m == "POST" && rp.name.empty() && rp.subresource.empty() && who.role == Role::Node) {
    auto posted = parseJsonOrYaml(req.body, false);
    if (posted && posted->is_object()) attrs.name = api::at<std::string>(*posted, {"metadata", "name"});
  }
  auto decision = authorize(who, attrs, [&]() -> std::string {
    auto pod = registry_.get("pods", rp.ns, rp.name);
    return pod ? api::at<std::string>(*pod, {"spec", "nodeName"}) : std::string();
  });
  if (!decision.allowed) {
    std::string what = r->group.empty() ? r->plural : r->plural + "." + r->group;
    if (!rp.subresource.empty()) what = r->plural + "/" + rp.subresource;
    std::string scope = r->namespaced && !rp.ns.empty() ? " in the namespace \"" + rp.ns + "\"" : " at the cluster scope";
    std::string msg = fmt::format("{}{} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\"{}",
                                  what, rp.name.empty() ? "" : " \"" + rp.name + "\"", who.user, attrs.verb,
                                  r->plural + (rp.subresource.empty() ? "" : "/" + rp.subresource), r->group, scope);
    if (!decision.reason.empty()) msg += ": " + decision.reason;
    HttpResponse resp = statusResponse(403, "Forbidden", msg);
    return resp;
  }

  if (r->servedVirtually) {
    if (!options_.serveMetrics) return statusResponse(503, "ServiceUnavailable", "metrics are not available yet");
    return options_.serveMetrics(req, r->plural, rp.ns, rp.name);
  }
  const std::string qn = r->qualifiedName();
  const std::int64_t now = std::time(nullptr);

  // ---- Collections ----
  if (rp.name.empty()) {
    ListOptions lo{req.param("labelSelector"), req.param("fieldSelector")};
    if (m == "GET" && watching) {
      auto channel = std::make_shared<WatchChannel>();
      bool table = wantsTable(req);
      TableObjects include = tableInclude(req);
      std::string rv = req.param("resourceVersion");
      bool bookmarks = isTrue(req.param("allowWatchBookmarks"));
      int timeout = req.hasParam("timeoutSeconds") ? std::atoi(req.param("timeoutSeconds").c_str()) : 1800;
      // `dumped`: the object's JSON text when the event carries it (made once per change for
      // all watchers, WatchEvent::json); the line is spliced around it.
      auto encode = std::make_shared<std::function<std::string(const std::string&, const Json&, const std::string*)>>(
          [r, table, include, now, first = std::make_shared<bool>(true)](const std::string& type, const Json& obj,
                                                                         const std::string* dumped) {
            if (!table) {
              std::string text = dumped ? std::string() : obj.dump();
              const std::string& body = dumped ? *dumped : text;
              std::string line;
              line.reserve(body.size() + type.size() + 24);
              line += "{\"object\":";
              line += body;
              line += ",\"type\":\"";
              line += type;  // ADDED | MODIFIED | DELETED: nothing to escape
              line += "\"}\n";
              return line;
            }
            Json out = toTable(*r, {obj}, api::resourceVersionOf(obj), "", *first, include, std::time(nullptr));
            *first = false;
            return Json{{"type", type}, {"object", out}}.dump() + "\n";
          });
      // No resourceVersion (or "0"): the current state as ADDED events, then changes.
      if (rv.empty() || rv == "0") {
        auto initial = registry_.list(qn, rp.ns, lo);
        if (!initial) return statusError(initial.error(), r, "");
        for (const auto& obj : initial->items) channel->lines.push_back((*encode)("ADDED", obj, nullptr));
        rv = initial->resourceVersion;
      }
      channel->lastResourceVersion = rv;
      std::weak_ptr<WatchChannel> weak = channel;
      auto w = registry_.watch(qn, rp.ns, rv, lo, [weak, encode, table](const WatchEvent& e) {
        auto ch = weak.lock();
        if (!ch) return;
        if (e.type == "ERROR") {  // the watch cache ended this watch: the client must list again
          std::lock_guard lock(ch->mu);
          ch->overflow = true;
          ch->endMessage = e.object->value("message", "the watch ended");
          ch->cv.notify_one();
          return;
        }
        std::string line = (*encode)(e.type, *e.object, table ? nullptr : &e.json());
        std::lock_guard lock(ch->mu);
        if (ch->lines.size() > 10000) {
          ch->overflow = true;
          return;
        }
        ch->lines.push_back(std::move(line));
        ch->lastResourceVersion = api::resourceVersionOf(*e.object);
        ch->cv.notify_one();
      });
      if (!w) return statusError(w.error(), r, "");
      channel->watch = std::move(*w);
      HttpResponse resp;
      resp.contentType = table ? kTableContentType : "application/json";
      int bookmarkEvery = options_.watchBookmarkSeconds;
      std::string kind = r->kind, apiVersion = r->apiVersion();
      resp.stream = [channel, timeout, bookmarks, bookmarkEvery, kind, apiVersion](ResponseStream& out) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout > 0 ? timeout : 1800);
        auto nextBookmark = std::chrono::steady_clock::now() + std::chrono::seconds(bookmarkEvery);
        // Send the header and anything queued at once so that the client sees the stream open.
        if (!out.write("")) return;
        while (!out.stopping()) {
          std::deque<std::string> batch;
          bool overflow = false;
          std::string lastRv, endMessage;
          {
            std::unique_lock lock(channel->mu);
            channel->cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return !channel->lines.empty() || channel->overflow; });
            batch.swap(channel->lines);
            overflow = channel->overflow;
            endMessage = channel->endMessage;
            lastRv = channel->lastResourceVersion;
          }
          std::string chunk;
          for (auto& l : batch) chunk += l;
          if (!chunk.empty() && !out.write(chunk)) return;
          if (overflow) {
            Json err = {{"type", "ERROR"},
                        {"object", {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
                                    {"message", endMessage.empty() ? "the watcher fell too far behind" : endMessage}, {"reason", "Expired"}, {"code", 410}}}};
            out.write(err.dump() + "\n");
            return;
          }
          auto nowTp = std::chrono::steady_clock::now();
          if (nowTp >= deadline) return;
          if (nowTp >= nextBookmark) {
            nextBookmark = nowTp + std::chrono::seconds(bookmarkEvery);
            if (bookmarks) {
              Json bm = {{"type", "BOOKMARK"},
                         {"object", {{"kind", kind}, {"apiVersion", apiVersion}, {"metadata", {{"resourceVersion", lastRv}}}}}};
              if (!out.write(bm.dump() + "\n")) return;
            } else if (!out.write("")) {
              return;
            }
          }
        }
      };
      return resp;
    }
    if (m == "GET") {
      ListRequest lr;
      lr.options = lo;
      if (req.hasParam("limit")) lr.limit = std::atoll(req.param("limit").c_str());
      lr.continueToken = req.param("continue");
      auto page = registry_.listPage(qn, rp.ns, lr);
      if (!page) return statusError(page.error(), r, "");
      if (wantsTable(req))
        return jsonResponse(200, toTable(*r, page->list.items, page->list.resourceVersion, page->continueToken, true,
                                         tableInclude(req), now),
                            kTableContentType);
      Json meta = {{"resourceVersion", page->list.resourceVersion}};
      if (!page->continueToken.empty()) meta["continue"] = page->continueToken;
      return jsonResponse(200, {{"kind", listKind(*r)}, {"apiVersion", r->apiVersion()}, {"metadata", meta},
                                {"items", page->list.items}});
    }
    if (m == "POST") {
      bool yaml = mediaType(req.header("content-type")) == "application/yaml";
      auto body = parseJsonOrYaml(req.body, yaml);
      if (!body) return statusError(body.error(), r, "");
      if (!body->is_object()) return statusResponse(400, "BadRequest", "the request body must be an object");
      if (r->namespaced) {
        std::string bodyNs = api::namespaceOf(*body);
        if (!bodyNs.empty() && bodyNs != rp.ns)
          return statusResponse(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
        if (rp.ns.empty()) return statusResponse(404, "NotFound", "the server could not find the requested resource");
        (*body)["metadata"]["namespace"] = rp.ns;
      }
      std::string manager = req.param("fieldManager");
      if (!manager.empty()) {
        Json entry = {{"manager", manager}, {"operation", "Update"}, {"apiVersion", r->apiVersion()},
                      {"time", api::nowRfc3339()}, {"fieldsType", "FieldsV1"}, {"fieldsV1", api::fieldSetOf(r->qualifiedName(), *body)}};
        (*body)["metadata"]["managedFields"] = Json::array({entry});
      }
      if (req.hasParam("dryRun")) {
        // Server-side dry run: validation without a write.
        Json obj = *body;
        applyDefaults(*r, obj);
        auto causes = validateObject(*r, obj, nullptr);
        if (!causes.empty())
          return statusError(invalidError(fmt::format("{}{} \"{}\" is invalid", r->kind, r->group.empty() ? "" : "." + r->group, api::nameOf(obj)), causes), r, api::nameOf(obj));
        obj["apiVersion"] = r->apiVersion();
        obj["kind"] = r->kind;
        return jsonResponse(201, obj);
      }
      std::string bodyName = api::nameOf(*body);
      auto made = registry_.create(qn, std::move(*body));
      if (!made) return statusError(made.error(), r, bodyName);
      return jsonResponse(201, *made);
    }
    if (m == "DELETE") {
      auto items = registry_.list(qn, rp.ns, lo);
      if (!items) return statusError(items.error(), r, "");
      Json deleted = Json::array();
      for (const auto& obj : items->items) {
        auto d = registry_.remove(qn, api::namespaceOf(obj), api::nameOf(obj));
        if (d) deleted.push_back(*d);
      }
      return jsonResponse(200, {{"kind", listKind(*r)}, {"apiVersion", r->apiVersion()},
                                {"metadata", {{"resourceVersion", items->resourceVersion}}}, {"items", deleted}});
    }
    return statusResponse(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  // ---- Subresources with their own shape ----
  const std::string& sub = rp.subresource;
  if (sub == "scale") {
    if (m == "GET") {
      auto s = registry_.getScale(qn, rp.ns, rp.name);
      return s ? jsonResponse(200, *s) : statusError(s.error(), r, rp.name);
    }
    if (m == "PUT") {
      auto body = parseJsonOrYaml(req.body, false);
      if (!body) return statusError(body.error(), r, rp.name);
      auto s = registry_.updateScale(qn, rp.ns, rp.name, *body);
      return s ? jsonResponse(200, *s) : statusError(s.error(), r, rp.name);
    }
  }
  if (r->kind == "Pod" && sub == "binding" && m == "POST") {
    auto body = parseJsonOrYaml(req.body, false);
    if (!body) return statusError(body.error(), r, rp.name);
    auto st = registry_.bindPod(rp.ns, rp.name, api::at<std::string>(*body, {"target", "name"}));
    if (!st) return statusError(st.error(), r, rp.name);
    return jsonResponse(201, {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Success"}, {"code", 201}});
  }
  if (r->kind == "Pod" && sub == "eviction" && m == "POST") {
    auto body = parseJsonOrYaml(req.body.empty() ? "{}" : req.body, false);
    if (!body) return statusError(body.error(), r, rp.name);
    DeleteOptions opts;
    if (auto g = api::at<Json>(*body, {"deleteOptions", "gracePeriodSeconds"}); g.is_number_integer()) opts.gracePeriodSeconds = g.get<std::int64_t>();
    auto d = registry_.remove(qn, rp.ns, rp.name, opts);
    if (!d) return statusError(d.error(), r, rp.name);
    return jsonResponse(201, {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Success"}, {"code", 201}});
  }
  if (r->kind == "Pod" && (sub == "log" || sub == "exec")) {
    auto pod = registry_.get(qn, rp.ns, rp.name);
    if (!pod) return statusError(pod.error(), r, rp.name);
    std::string nodeName = api::at<std::string>(*pod, {"spec", "nodeName"});
    if (nodeName.empty())
      return statusResponse(400, "BadRequest", fmt::format("pod {} does not have a host assigned", rp.name));
    std::string container = req.param("container");
    if (container.empty()) {
      auto containers = api::at<Json>(*pod, {"spec", "containers"}, Json::array());
      if (containers.size() == 1) container = containers[0].value("name", "");
      else if (!containers.empty()) {
        std::string names;
        for (const auto& c : containers) names += (names.empty() ? "" : " ") + c.value("name", "");
        return statusResponse(400, "BadRequest", fmt::format("a container name must be specified for pod {}, choose one of: [{}]", rp.name, names));
      }
    }
    auto node = registry_.get("nodes", "", nodeName);
    std::string endpoint = node ? nodeApiEndpoint(*node) : std::string();  // InternalIP:kubeletEndpoint port
    if (!nodes_ || endpoint.empty())
      return statusResponse(503, "ServiceUnavailable", fmt::format("the agent on node {} cannot be reached for pods/{}", nodeName, sub));
    std::string query = req.target.find('?') == std::string::npos ? "" : req.target.substr(req.target.find('?'));
    std::string agentPath = fmt::format("/{}/{}/{}/{}{}", sub == "log" ? "containerLogs" : "exec", rp.ns, rp.name, container, query);
    return nodes_->proxy(endpoint, req, agentPath);
  }

  // ---- Single objects ----
  if (m == "GET") {
    auto obj = registry_.get(qn, rp.ns, rp.name);
    if (!obj) return statusError(obj.error(), r, rp.name);
    if (wantsTable(req) && sub.empty())
      return jsonResponse(200, toTable(*r, {*obj}, api::resourceVersionOf(*obj), "", true, tableInclude(req), now), kTableContentType);
    return jsonResponse(200, *obj);
  }
  if (m == "PUT") {
    bool yaml = mediaType(req.header("content-type")) == "application/yaml";
    auto body = parseJsonOrYaml(req.body, yaml);
    if (!body) return statusError(body.error(), r, rp.name);
    if (!body->is_object()) return statusResponse(400, "BadRequest", "the request body must be an object");
    std::string bodyName = api::nameOf(*body);
    if (!bodyName.empty() && bodyName != rp.name)
      return statusResponse(400, "BadRequest", fmt::format("the name of the object ({}) does not match the name on the URL ({})", bodyName, rp.name));
    if (r->namespaced) {
      std::string bodyNs = api::namespaceOf(*body);
      if (!bodyNs.empty() && bodyNs != rp.ns)
        return statusResponse(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
      (*body)["metadata"]["namespace"] = rp.ns;
    }
    (*body)["metadata"]["name"] = rp.name;
    auto updated = sub == "status" ? registry_.updateStatus(qn, *body) : registry_.update(qn, *body);
    if (!updated) return statusError(updated.error(), r, rp.name);
    return jsonResponse(200, *updated);
  }
  if (m == "PATCH") {
    PatchRequest pr;
    pr.contentType = mediaType(req.header("content-type"));
    pr.body = req.body;
    pr.fieldManager = req.param("fieldManager");
    pr.force = isTrue(req.param("force"));
    pr.subresource = sub;
    if (pr.contentType == "application/apply-patch+yaml" && pr.fieldManager.empty())
      return statusResponse(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    bool created = false;
    auto patched = registry_.patch(qn, rp.ns, rp.name, pr, &created);
    if (!patched) return statusError(patched.error(), r, rp.name);
    return jsonResponse(created ? 201 : 200, *patched);
  }
  if (m == "DELETE") {
    DeleteOptions opts;
    if (!req.body.empty()) {
      auto body = parseJsonOrYaml(req.body, false);
      if (!body) return statusError(body.error(), r, rp.name);
      if (auto g = api::at<Json>(*body, {"gracePeriodSeconds"}); g.is_number_integer()) opts.gracePeriodSeconds = g.get<std::int64_t>();
      opts.propagationPolicy = api::at<std::string>(*body, {"propagationPolicy"});
      if (api::at<bool>(*body, {"orphanDependents"}, false)) opts.propagationPolicy = "Orphan";
      opts.preconditionUid = api::at<std::string>(*body, {"preconditions", "uid"});
      opts.preconditionResourceVersion = api::at<std::string>(*body, {"preconditions", "resourceVersion"});
    }
    if (req.hasParam("gracePeriodSeconds")) opts.gracePeriodSeconds = std::atoll(req.param("gracePeriodSeconds").c_str());
    if (req.hasParam("propagationPolicy")) opts.propagationPolicy = req.param("propagationPolicy");
    auto d = registry_.remove(qn, rp.ns, rp.name, opts);
    if (!d) return statusError(d.error(), r, rp.name);
    return jsonResponse(200, *d);
  }
  return statusResponse(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

}  // namespace ferry::cp
