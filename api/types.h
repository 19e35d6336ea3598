// Typed, read-only views of the objects several modules interpret. They are
// parsed from the JSON document (object.h), which stays the source of truth.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry::api {

// intstr.IntOrString: a port number or a port name.
struct IntOrString {
  bool isString = false;
  int number = 0;
  std::string text;
  static IntOrString fromJson(const Json& j);
};

struct ServicePort {
  std::string name;
  std::string protocol = "TCP";  // TCP | UDP | SCTP
  int port = 0;
  IntOrString targetPort;        // defaults to port
  int nodePort = 0;              // 0 when not a NodePort
};

struct Service {
  std::string name;
  std::string ns;
  std::string uid;
  std::string type = "ClusterIP";  // ClusterIP | NodePort | LoadBalancer | ExternalName
  std::string clusterIP;           // "None" for headless, "" when unset
  std::vector<std::string> clusterIPs;
  std::vector<ServicePort> ports;
  Labels selector;
  bool hasSelector = false;
  std::string sessionAffinity = "None";  // None | ClientIP
  int affinityTimeoutSeconds = 10800;
  std::string externalName;
  std::string externalTrafficPolicy = "Cluster";  // Cluster | Local
  std::string internalTrafficPolicy = "Cluster";  // Cluster | Local
  bool publishNotReadyAddresses = false;

  bool headless() const { return clusterIP == "None"; }
  static Result<Service> fromJson(const Json& j);
};

struct EndpointPort {
  std::string name;
  std::string protocol = "TCP";
  int port = 0;
};

struct Endpoint {
  std::vector<std::string> addresses;
  // conditions; Kubernetes treats a missing `ready` as true.
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  std::string nodeName;
  std::string hostname;
  std::string targetPodName;  // targetRef.name when kind is Pod
};

struct EndpointSlice {
  std::string name;
  std::string ns;
  std::string serviceName;  // label kubernetes.io/service-name
  std::string addressType = "IPv4";
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  static Result<EndpointSlice> fromJson(const Json& j);
};

struct NodeAddress {
  std::string type;  // InternalIP | ExternalIP | Hostname
  std::string address;
};

struct Node {
  std::string name;
  std::string podCIDR;
  std::vector<NodeAddress> addresses;
  bool ready = false;
  bool unschedulable = false;
  std::string internalIP() const;
  static Result<Node> fromJson(const Json& j);
};

}  // namespace ferry::api
