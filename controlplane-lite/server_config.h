// Everything `ferry server` is configured with; flags map 1:1 (cmd/options.cc).
#pragma once

#include <string>

namespace ferry::cp {

struct ServerConfig {
  std::string dataDir = "/var/lib/ferry/server";
  std::string listen = "0.0.0.0:6443";
  std::string datastore = "sqlite";  // or etcd://host:port[,host:port]
  std::string joinTokenFile;  // a further server on a shared etcd: the first server's data-dir/token
  std::string clusterCIDR = "10.42.0.0/16";
  std::string serviceCIDR = "10.43.0.0/16";
  std::string clusterDNS = "10.43.0.10";
  std::string clusterDomain = "cluster.local";
  std::string advertiseAddress;       // node IP put in the serving cert and the kubernetes Endpoints; empty: detect
  int nodeMonitorGracePeriodSeconds = 40;
  int podEvictionTimeoutSeconds = 300;  // default toleration of unreachable/not-ready taints
  int hpaDownscaleStabilizationSeconds = 300;
  bool runControllers = true;         // scheduler + controllers (leader-elected on etcd)
};

}  // namespace ferry::cp
