// What a pod's containers see of the pod: /etc/resolv.conf (dnsPolicy, dnsConfig),
// /etc/hosts, the command line from command/args over the image's Entrypoint/Cmd, and
// $(VAR) expansion in env values, command and args — all as the kubelet does them.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <string>
#include <vector>

namespace ferry::runtime {

struct ClusterDnsSettings {
  std::string clusterDNS;          // e.g. 10.43.0.10
  std::string clusterDomain = "cluster.local";
  std::string hostResolvConf = "/etc/resolv.conf";  // for dnsPolicy Default
};

// /etc/resolv.conf content for `pod` (its spec.dnsPolicy, spec.dnsConfig, hostNetwork):
// ClusterFirst → "nameserver <clusterDNS>", "search <ns>.svc.<domain> svc.<domain> <domain>",
// "options ndots:5"; Default → the host's file; None → dnsConfig only; dnsConfig merged.
// Errors name the bad field.
Result<std::string> resolvConfFor(const api::Json& pod, const ClusterDnsSettings& dns);

// /etc/hosts content: localhost entries, the pod's IPs with its hostname (and FQDN when
// spec.subdomain is set), and spec.hostAliases.
std::string etcHostsFor(const api::Json& pod, const std::vector<std::string>& podIPs, const std::string& clusterDomain);

// The pod's hostname: spec.hostname or metadata.name, cut to 63 characters.
std::string hostnameFor(const api::Json& pod);

// Kubernetes' rule: no command and no args → Entrypoint + Cmd; args only → Entrypoint +
// args; command only → command; both → command + args. $(VAR) references are expanded
// from `env` ("NAME=value" list); $$ escapes $.
std::vector<std::string> combineCommand(const std::vector<std::string>& command, const std::vector<std::string>& args,
                                        const std::vector<std::string>& imageEntrypoint,
                                        const std::vector<std::string>& imageCmd, const std::vector<std::string>& env);

// Docker-link-style variables the kubelet gives every container for the Services of its
// namespace (spec.enableServiceLinks, default true) and, always, for the `kubernetes`
// Service of the default namespace: FOO_SERVICE_HOST, FOO_SERVICE_PORT[_<PORTNAME>],
// FOO_PORT, FOO_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]. Headless Services and Services
// without a ClusterIP give none. Sorted by Service name.
std::vector<std::string> serviceLinkVariables(const api::Json& pod, const std::vector<api::Json>& services);

// $(VAR) expansion against "NAME=value" entries; unknown references stay as written.
std::string expandVariables(const std::string& text, const std::vector<std::string>& env);

}  // namespace ferry::runtime
