// The e2e harness: a Ferry cluster on one machine. Each node is a network
// namespace the harness makes (joined to the others by a bridge in an
// "underlay" namespace), with its own agent, cgroup root, run dir and BPF pins.
// Node 1 runs `ferry server` (control plane + its agent). Nothing touches the
// machine's root network namespace; everything is removed at the end.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ferry::e2e {

struct CommandResult {
  int exitCode = -1;
  std::string output;  // stdout and stderr, interleaved
};

// Runs `argv` (no shell), capturing output; kills it after `timeout`.
CommandResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(120),
                  const std::string& stdinText = {});
// Runs a shell command line.
CommandResult sh(const std::string& command, std::chrono::seconds timeout = std::chrono::seconds(120));

// Polls `condition` every 200 ms until it holds or `timeout` passes.
bool waitFor(const std::function<bool()>& condition, std::chrono::seconds timeout);

// Starts `argv` (no shell) in its own process group inside the network namespace
// `netns` (only the network namespace: an agent's bind-mount pins must stay visible
// to the next agent; empty: the caller's), stdout and stderr appended to `logPath`,
// stdin from /dev/null. Returns the child's pid (the caller reaps it).
int spawnInNetns(const std::string& netns, const std::vector<std::string>& argv, const std::string& logPath);

// Removes what a node left on the machine: kills what still runs in its cgroup
// subtree `cgroupRoot` (under every hierarchy) and removes it, and removes its
// BPF pin directory.
void removeNodeLeftovers(const std::string& cgroupRoot, const std::string& bpffsDir);
// Unmounts every mount point below `dir` (netns pins, overlay rootfs, volumes), deepest first.
void unmountBelow(const std::string& dir);

// Why this machine cannot run e2e tests (not root, no ferry binary, ...), or empty.
std::string e2eUnavailableReason();

// Builds the static-busybox OCI archive the e2e tests run (tests/images/make-busybox-oci)
// into `dir`; returns its path, or empty when it could not be built.
std::string makeBusyboxImage(const std::string& dir);

struct ClusterOptions {
  int nodes = 1;
  bool agents = true;                     // false: `ferry server --no-agent`, API only
  std::vector<std::string> serverFlags;   // extra flags for `ferry server`
  std::vector<std::string> agentFlags;    // extra flags for every agent
  std::string datastore = "sqlite";
  // Node 1's agent as its own process beside `ferry server --no-agent` (instead of inside
  // the server), e.g. to measure each process alone (bench/footprint).
  bool separateServerProcess = false;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts everything and waits until the API answers and every node is Ready.
  // Returns an error message, or empty on success.
  std::string start();

  // kubectl inside node 1's namespace with the admin kubeconfig.
  CommandResult kubectl(const std::string& args, std::chrono::seconds timeout = std::chrono::seconds(120),
                        const std::string& stdinText = {});
  // A shell command inside node `index`'s (1-based) network namespace.
  CommandResult inNode(int index, const std::string& command, std::chrono::seconds timeout = std::chrono::seconds(120));

  // Imports an image archive into every node's image store.
  std::string importImage(const std::string& archivePath);
  // Builds the busybox test image (docker.io/library/busybox:1.35) and imports it into
  // every node: what most e2e tests do right after start(). "" or what failed.
  std::string importBusybox();

  std::string nodeName(int index) const;
  std::string nodeNamespace(int index) const;
  // The node's --cgroup-root (relative to each hierarchy's mount point).
  std::string cgroupRoot(int index) const { return "ferry-e2e-" + id_ + "-n" + std::to_string(index); }
  std::string dataDir() const { return workDir_ + "/server"; }
  std::string workDir() const { return workDir_; }
  std::string serverLog() const;  // node 1's `ferry server` (with its agent)
  std::string agentLog(int index) const;  // node `index`'s process (the server for node 1)
  // Process ids: node `index`'s agent (the server for node 1 unless separateServerProcess), the server.
  int agentPid(int index) const { return index >= 1 && index <= static_cast<int>(pids_.size()) ? pids_[index - 1] : -1; }
  int serverPid() const { return options_.separateServerProcess ? serverPid_ : agentPid(1); }

  // Stops node `index`'s agent (SIGKILL) — for failure tests. Its pods keep
  // running (as on a real node whose agent died); the harness still removes them
  // at the end (by the node's cgroup tree).
  void killAgent(int index);
  // Starts node `index`'s agent again with the same flags (after killAgent).
  // Returns an error message, or empty.
  std::string restartAgent(int index);
  // Cuts (or restores) node `index`'s link to the other nodes: its underlay port
  // goes down, as when a machine drops off the network.
  void disconnectNode(int index);
  void reconnectNode(int index);

  // What the containers of pod `pod` on node `index` wrote (the text of their CRI
  // log lines, in file order), read from the node's log directory.
  std::string podOutput(int index, const std::string& pod, const std::string& ns = "default") const;

 private:
  std::string startNodeNetwork();
  std::vector<std::string> agentCommonFlags(int index) const;
  void stopAll();

  ClusterOptions options_;
  std::string id_;
  std::string workDir_;
  std::vector<int> pids_;  // pids_[i]: process of node i+1 (server for node 1)
  std::vector<std::vector<std::string>> commands_;  // commands_[i]: how node i+1's process was started
  bool networkMade_ = false;
  int serverPid_ = -1;  // separateServerProcess only
};

}  // namespace ferry::e2e
