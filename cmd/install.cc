// `ferry install server|agent [flags]` and `ferry uninstall [--purge]`.
#include "cmd/subcommands.h"
#include "cmd/systemd_unit.h"

#include "agent/agent_config.h"
#include "cgroup/cgroup_tree.h"
#include "cgroup/systemd_delegation.h"
#include "proxy/nft_ruleset.h"
#include "proxy/service_proxy.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace ferry::cmd {
namespace {

constexpr const char* kUsage = R"(Usage: ferry install server|agent [--unit-dir DIR] [--config-dir DIR] [--no-start] [ferry flags...]
       ferry uninstall [--unit-dir DIR] [--config-dir DIR] [--purge]

install writes a systemd unit that runs `ferry server|agent` with the given flags
(Type=notify, Delegate=yes, KillMode=process, Restart=always), records the flags
in <config-dir>/install.json (default /etc/ferry) and enables and starts the unit
(unless --no-start or systemd is not running). uninstall stops and removes it;
--purge also removes what Ferry made on the node: data and run dirs, its cgroup
subtree, BPF pins, its nftables tables (`ip ferry`, `ip ferry-nat`) and the config dir.
)";

constexpr const char* kDefaultConfigDir = "/etc/ferry";

bool systemdRunning() { return fs::exists("/run/systemd/system"); }

int systemctl(const std::string& args) { return std::system(("systemctl " + args).c_str()); }

std::string flagValue(const std::vector<std::string>& args, const std::string& name, const std::string& fallback) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--" + name && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind("--" + name + "=", 0) == 0) return args[i].substr(name.size() + 3);
  }
  return fallback;
}

// Deletes the tables the Service proxy creates; a table that is not there is fine.
Status purgeNftTables() {
  auto nft = proxy::NftablesClient::open();
  if (!nft) return fail(nft.error());
  proxy::ProxyConfig defaults;
  for (const std::string& table : {defaults.nftTable, defaults.nftNatTable}) {
    if (auto st = (*nft)->run(proxy::renderDeleteTable(table)); !st) return fail(st.error().wrap("table ip " + table));
    fmt::print("removed nftables table ip {}\n", table);
  }
  // IPv6 Services in nftables mode.
  if (auto st = (*nft)->run(proxy::renderDeleteTable(defaults.nftTable, "ip6")); !st)
    return fail(st.error().wrap("table ip6 " + defaults.nftTable));
  fmt::print("removed nftables table ip6 {}\n", defaults.nftTable);
  return {};
}

}  // namespace

int runInstall(const std::vector<std::string>& argsIn) {
  if (argsIn.empty() || (argsIn[0] != "server" && argsIn[0] != "agent")) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  std::string role = argsIn[0];
  std::string unitDir = "/etc/systemd/system";
  std::string configDir = kDefaultConfigDir;
  bool start = true;
  std::vector<std::string> flags;
  for (size_t i = 1; i < argsIn.size(); ++i) {
    if (argsIn[i] == "--unit-dir" && i + 1 < argsIn.size()) unitDir = argsIn[++i];
    else if (argsIn[i] == "--config-dir" && i + 1 < argsIn.size()) configDir = argsIn[++i];
    else if (argsIn[i] == "--no-start") start = false;
    else flags.push_back(argsIn[i]);
  }
  // On a pure cgroup-v2 node under systemd the pods live in a delegated scope the agent
  // asks systemd for (cgroup/systemd_delegation.h); a hybrid host keeps a top-level root.
  bool cgroupRootGiven = std::any_of(flags.begin(), flags.end(),
                                     [](const std::string& f) { return f.rfind("--cgroup-root", 0) == 0; });
  if (!cgroupRootGiven && fs::exists("/sys/fs/cgroup/cgroup.controllers"))
    flags.push_back(std::string("--cgroup-root=") + cgroup::kDelegatedCgroupRoot);
  std::error_code ec;
  std::string binary = fs::canonical("/proc/self/exe", ec).string();
  if (ec) {
    fmt::print(stderr, "ferry install: cannot find the running binary: {}\n", ec.message());
    return 1;
  }
  UnitOptions unit{role, binary, flags, configDir + "/" + role + ".env"};
  fs::create_directories(unitDir, ec);
  std::string unitPath = unitDir + "/" + unitName(role);
  {
    std::ofstream out(unitPath);
    out << renderUnit(unit);
    if (!out) {
      fmt::print(stderr, "ferry install: cannot write {}\n", unitPath);
      return 1;
    }
  }
  // What uninstall --purge needs to find what this unit made (a unit written elsewhere,
  // e.g. for a look at it, records nothing unless it is given its own config dir).
  if (unitDir == "/etc/systemd/system" || configDir != kDefaultConfigDir) {
    fs::create_directories(configDir, ec);
    nlohmann::json record = {{"role", role}, {"unit", unitPath}, {"args", flags}};
    std::ofstream(configDir + "/install.json") << record.dump(2) << "\n";
    if (!fs::exists(configDir + "/" + role + ".env"))
      std::ofstream(configDir + "/" + role + ".env") << "# Environment for " << unitName(role) << " (e.g. FERRY_LOG_LEVEL=debug)\n";
  }
  fmt::print("wrote {}\n", unitPath);
  if (!start) return 0;
  if (!systemdRunning()) {
    fmt::print("systemd is not running here: start it later with `systemctl enable --now {}`\n", unitName(role));
    return 0;
  }
  if (systemctl("daemon-reload") != 0 || systemctl("enable --now " + unitName(role)) != 0) {
    fmt::print(stderr, "ferry install: systemctl enable --now {} failed\n", unitName(role));
    return 1;
  }
  fmt::print("{} enabled and started\n", unitName(role));
  return 0;
}

int runUninstall(const std::vector<std::string>& args) {
  std::string unitDir = "/etc/systemd/system";
  std::string configDir = kDefaultConfigDir;
  bool purge = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--unit-dir" && i + 1 < args.size()) unitDir = args[++i];
    else if (args[i] == "--config-dir" && i + 1 < args.size()) configDir = args[++i];
    else if (args[i] == "--purge") purge = true;
    else {
      fmt::print(stderr, "ferry uninstall: unexpected argument \"{}\"\n{}", args[i], kUsage);
      return 2;
    }
  }
  std::vector<std::string> flags;
  std::string role = "server";
  if (std::ifstream in(configDir + "/install.json"); in) {
    auto record = nlohmann::json::parse(in, nullptr, false);
    if (!record.is_discarded()) {
      role = record.value("role", role);
      flags = record.value("args", std::vector<std::string>{});
    }
  }
  for (const std::string r : {"server", "agent"}) {
    std::string unitPath = unitDir + "/" + unitName(r);
    if (!fs::exists(unitPath)) continue;
    if (systemdRunning()) systemctl("disable --now " + unitName(r) + " >/dev/null 2>&1");
    fs::remove(unitPath);
    fmt::print("removed {}\n", unitPath);
  }
  if (systemdRunning()) systemctl("daemon-reload");
  if (!purge) return 0;

  agent::AgentConfig defaults;
  std::string dataDir = flagValue(flags, "data-dir", role == "server" ? "/var/lib/ferry/server" : defaults.dataDir);
  std::string agentDataDir = flagValue(flags, "agent-data-dir", defaults.dataDir);
  std::string runDir = flagValue(flags, "run-dir", defaults.runDir);
  std::string cgroupRoot = flagValue(flags, "cgroup-root", defaults.cgroupRoot);
  std::string bpffsDir = flagValue(flags, "bpffs-dir", defaults.bpffsDir);
  int failures = 0;
  // Pods first: their cgroups (and every process in them) go.
  if (cgroupRoot == cgroup::kDelegatedCgroupRoot) {
    // The pods' scope, and the shims that KillMode=process left in the stopped unit.
    if (auto st = cgroup::removeDelegatedCgroup("system.slice/" + unitName(role)); !st) {
      fmt::print(stderr, "purge cgroups: {}\n", st.error().message);
      ++failures;
    }
  } else if (auto tree = cgroup::CgroupTree::open(cgroupRoot)) {
    if (auto st = (*tree)->destroy(); !st) {
      fmt::print(stderr, "purge cgroups: {}\n", st.error().message);
      ++failures;
    }
  }
  // Namespace pins and overlay mounts under the run and data dirs, deepest first.
  std::vector<std::string> mounts;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mountPoint;
    f >> id >> parent >> dev >> root >> mountPoint;
    for (const auto& dir : {runDir, dataDir, agentDataDir})
      if (mountPoint.rfind(dir + "/", 0) == 0) mounts.push_back(mountPoint);
  }
  std::sort(mounts.begin(), mounts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& m : mounts) umount2(m.c_str(), MNT_DETACH);
  // The proxy's nftables tables (NodePort DNAT / nftables-mode Services, pod egress
  // masquerade), in this network namespace, where the agent made them.
  if (auto st = purgeNftTables(); !st) {
    fmt::print(stderr, "purge nftables: {}\n", st.error().message);
    ++failures;
  }
  std::error_code ec;
  // Unpinning the BPF links detaches the Service programs.
  for (const auto& dir : {bpffsDir, runDir, dataDir, agentDataDir, configDir}) {
    fs::remove_all(dir, ec);
    if (ec) {
      fmt::print(stderr, "purge {}: {}\n", dir, ec.message());
      ++failures;
    } else {
      fmt::print("removed {}\n", dir);
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace ferry::cmd
