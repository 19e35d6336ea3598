// How a second `ferry server` on a shared etcd joins the first one's cluster.
//
// Every server of a cluster must sign with the same CA (kubeconfigs, node
// certificates and serving certificates are checked against it) and accept the
// same node join token. The first server puts its CA, encrypted with a key
// derived from the join token, under one datastore key outside /registry/ (the
// API never serves it). A later server started on a fresh data dir with
// `--token-file` (the first server's data-dir/token) decrypts it into its own
// data dir and then makes its own serving and admin certificates, as k3s servers
// on an external datastore do with their bootstrap data.
#pragma once

#include "api/error.h"
#include "controlplane-lite/store.h"

#include <string>

namespace ferry::cp {

// The datastore key holding the encrypted CA.
inline constexpr const char* kClusterBootstrapKey = "/ferry/bootstrap/cluster-ca";

// Before the data dir's credentials are loaded or made (ensureClusterCredentials):
// - datastore has no bootstrap data: a new cluster; `tokenFile`, when given, sets
//   its join token (written to dataDir/token when that is absent).
// - datastore has it and dataDir has no CA: joins — writes the decrypted CA and the
//   token into dataDir. Fails naming what is wrong when there is no token or it
//   does not open the data.
// - both: checks that dataDir's CA is the cluster's (a data dir of another
//   cluster pointed at this datastore would issue certificates nobody accepts).
Status prepareClusterCa(Store& store, const std::string& dataDir, const std::string& tokenFile);

// After ensureClusterCredentials: publishes dataDir's CA (encrypted with dataDir's
// token) when the datastore has none. When another server published first, checks
// that it is the same CA.
Status publishClusterCa(Store& store, const std::string& dataDir);

}  // namespace ferry::cp
