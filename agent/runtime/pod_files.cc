#include "agent/runtime/pod_files.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace ferry::runtime {

namespace {

std::vector<std::string> stringList(const api::Json& j, const char* field, std::string& error) {
  std::vector<std::string> out;
  if (!j.contains(field) || j[field].is_null()) return out;
  if (!j[field].is_array()) {
    error = fmt::format("spec.dnsConfig.{}: must be a list of strings", field);
    return out;
  }
  for (const auto& v : j[field]) {
    if (!v.is_string()) {
      error = fmt::format("spec.dnsConfig.{}: must be a list of strings", field);
      return {};
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

void appendUnique(std::vector<std::string>& to, const std::vector<std::string>& from) {
  for (const auto& v : from)
    if (std::find(to.begin(), to.end(), v) == to.end()) to.push_back(v);
}

}  // namespace

Result<std::string> resolvConfFor(const api::Json& pod, const ClusterDnsSettings& dns) {
  const api::Json spec = pod.value("spec", api::Json::object());
  std::string policy = spec.value("dnsPolicy", std::string("ClusterFirst"));
  bool hostNetwork = spec.value("hostNetwork", false);
  if (policy == "ClusterFirst" && hostNetwork) policy = "Default";
  if (policy == "ClusterFirstWithHostNet") policy = "ClusterFirst";

  std::vector<std::string> nameservers, searches;
  std::vector<std::pair<std::string, std::optional<std::string>>> options;
  auto setOption = [&](const std::string& name, std::optional<std::string> value) {
    for (auto& o : options)
      if (o.first == name) {
        o.second = std::move(value);
        return;
      }
    options.emplace_back(name, std::move(value));
  };

  if (policy == "ClusterFirst") {
    if (!dns.clusterDNS.empty()) nameservers.push_back(dns.clusterDNS);
    std::string ns = api::namespaceOf(pod).empty() ? "default" : api::namespaceOf(pod);
    searches = {fmt::format("{}.svc.{}", ns, dns.clusterDomain), fmt::format("svc.{}", dns.clusterDomain),
                dns.clusterDomain};
    setOption("ndots", "5");
  } else if (policy == "Default") {
    std::ifstream in(dns.hostResolvConf);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string key;
      words >> key;
      std::string v;
      if (key == "nameserver") {
        if (words >> v) nameservers.push_back(v);
      } else if (key == "search" || key == "domain") {
        while (words >> v) searches.push_back(v);
      } else if (key == "options") {
        while (words >> v) {
          auto colon = v.find(':');
          if (colon == std::string::npos)
            setOption(v, std::nullopt);
          else
            setOption(v.substr(0, colon), v.substr(colon + 1));
        }
      }
    }
  } else if (policy != "None") {
    return fail(Error::invalid(fmt::format("spec.dnsPolicy: unsupported value \"{}\"", policy)));
  }

  if (spec.contains("dnsConfig") && spec["dnsConfig"].is_object()) {
    const auto& cfg = spec["dnsConfig"];
    std::string error;
    appendUnique(nameservers, stringList(cfg, "nameservers", error));
    appendUnique(searches, stringList(cfg, "searches", error));
    if (!error.empty()) return fail(Error::invalid(error));
    if (cfg.contains("options") && cfg["options"].is_array()) {
      for (const auto& o : cfg["options"]) {
        if (!o.is_object() || !o.contains("name") || !o["name"].is_string())
          return fail(Error::invalid("spec.dnsConfig.options: each option needs a name"));
        std::optional<std::string> value;
        if (o.contains("value") && o["value"].is_string()) value = o["value"].get<std::string>();
        setOption(o["name"].get<std::string>(), value);
      }
    }
  } else if (policy == "None") {
    return fail(Error::invalid("spec.dnsConfig: required when dnsPolicy is None"));
  }
  // The resolver reads at most 3 nameservers and 32 search domains.
  if (nameservers.size() > 3) nameservers.resize(3);
  if (searches.size() > 32) searches.resize(32);

  std::string out;
  for (const auto& n : nameservers) out += "nameserver " + n + "\n";
  if (!searches.empty()) {
    out += "search";
    for (const auto& s : searches) out += " " + s;
    out += "\n";
  }
  if (!options.empty()) {
    out += "options";
    for (const auto& [name, value] : options) out += " " + name + (value ? ":" + *value : "");
    out += "\n";
  }
  return out;
}

std::string hostnameFor(const api::Json& pod) {
  std::string name = api::at<std::string>(pod, {"spec", "hostname"});
  if (name.empty()) name = api::nameOf(pod);
  if (name.size() > 63) name.resize(63);
  while (!name.empty() && (name.back() == '-' || name.back() == '.')) name.pop_back();
  return name;
}

std::string etcHostsFor(const api::Json& pod, const std::vector<std::string>& podIPs, const std::string& clusterDomain) {
  std::string out =
      "# Kubernetes-managed hosts file.\n"
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\n"
      "fe00::0\tip6-mcastprefix\n"
      "fe00::1\tip6-allnodes\n"
      "fe00::2\tip6-allrouters\n";
  std::string hostname = hostnameFor(pod);
  std::string subdomain = api::at<std::string>(pod, {"spec", "subdomain"});
  std::string ns = api::namespaceOf(pod).empty() ? "default" : api::namespaceOf(pod);
  for (const auto& ip : podIPs) {
    if (subdomain.empty())
      out += fmt::format("{}\t{}\n", ip, hostname);
    else
      out += fmt::format("{}\t{}.{}.{}.svc.{}\t{}\n", ip, hostname, subdomain, ns, clusterDomain, hostname);
  }
  const api::Json aliases = api::at<api::Json>(pod, {"spec", "hostAliases"}, api::Json::array());
  if (aliases.is_array() && !aliases.empty()) {
    out += "\n# Entries added by HostAliases.\n";
    for (const auto& a : aliases) {
      std::string ip = a.value("ip", std::string());
      std::string names;
      for (const auto& h : a.value("hostnames", api::Json::array()))
        if (h.is_string()) names += "\t" + h.get<std::string>();
      if (!ip.empty() && !names.empty()) out += ip + names + "\n";
    }
  }
  return out;
}

std::vector<std::string> serviceLinkVariables(const api::Json& pod, const std::vector<api::Json>& services) {
  std::string ns = api::namespaceOf(pod);
  bool links = api::at<bool>(pod, {"spec", "enableServiceLinks"}, true);
  std::vector<const api::Json*> chosen;
  for (const auto& svc : services) {
    bool master = api::namespaceOf(svc) == "default" && api::nameOf(svc) == "kubernetes";
    if (!master && !(links && api::namespaceOf(svc) == ns)) continue;
    // The master Service of the default namespace wins over one of the same name here.
    if (!master && api::nameOf(svc) == "kubernetes" && ns != "default") continue;
    std::string ip = api::at<std::string>(svc, {"spec", "clusterIP"});
    if (ip.empty() || ip == "None") continue;
    chosen.push_back(&svc);
  }
  std::sort(chosen.begin(), chosen.end(), [](const api::Json* a, const api::Json* b) { return api::nameOf(*a) < api::nameOf(*b); });
  auto envName = [](std::string s) {
    for (char& c : s) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  std::vector<std::string> env;
  for (const api::Json* svc : chosen) {
    std::string name = envName(api::nameOf(*svc));
    std::string ip = api::at<std::string>(*svc, {"spec", "clusterIP"});
    const api::Json ports = api::at<api::Json>(*svc, {"spec", "ports"}, api::Json::array());
    if (!ports.is_array() || ports.empty()) continue;
    env.push_back(name + "_SERVICE_HOST=" + ip);
    env.push_back(name + "_SERVICE_PORT=" + std::to_string(ports[0].value("port", 0)));
    for (const auto& p : ports)
      if (!p.value("name", std::string()).empty())
        env.push_back(name + "_SERVICE_PORT_" + envName(p.value("name", std::string())) + "=" +
                      std::to_string(p.value("port", 0)));
    auto lower = [](std::string s) {
      for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return s;
    };
    std::string firstProto = lower(ports[0].value("protocol", std::string("TCP")));
    env.push_back(name + "_PORT=" + firstProto + "://" + ip + ":" + std::to_string(ports[0].value("port", 0)));
    for (const auto& p : ports) {
      std::string proto = p.value("protocol", std::string("TCP"));
      std::string port = std::to_string(p.value("port", 0));
      std::string prefix = name + "_PORT_" + port + "_" + envName(proto);
      env.push_back(prefix + "=" + lower(proto) + "://" + ip + ":" + port);
      env.push_back(prefix + "_PROTO=" + lower(proto));
      env.push_back(prefix + "_PORT=" + port);
      env.push_back(prefix + "_ADDR=" + ip);
    }
  }
  return env;
}

std::string expandVariables(const std::string& text, const std::vector<std::string>& env) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 >= text.size()) {
      out.push_back(text[i]);
      continue;
    }
    if (text[i + 1] == '$') {  // $$ → $
      out.push_back('$');
      ++i;
      continue;
    }
    if (text[i + 1] == '(') {
      size_t close = text.find(')', i + 2);
      if (close != std::string::npos) {
        std::string name = text.substr(i + 2, close - i - 2);
        const std::string* found = nullptr;
        for (const auto& e : env)  // the last definition wins
          if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=') found = &e;
        if (found) {
          out += found->substr(name.size() + 1);
          i = close;
          continue;
        }
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::vector<std::string> combineCommand(const std::vector<std::string>& command, const std::vector<std::string>& args,
                                        const std::vector<std::string>& imageEntrypoint,
                                        const std::vector<std::string>& imageCmd, const std::vector<std::string>& env) {
  std::vector<std::string> out;
  if (!command.empty()) {
    for (const auto& c : command) out.push_back(expandVariables(c, env));
    for (const auto& a : args) out.push_back(expandVariables(a, env));
    return out;
  }
  out = imageEntrypoint;
  if (!args.empty()) {
    for (const auto& a : args) out.push_back(expandVariables(a, env));
  } else {
    for (const auto& c : imageCmd) out.push_back(c);
  }
  return out;
}

}  // namespace ferry::runtime
