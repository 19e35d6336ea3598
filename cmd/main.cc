// `ferry`: one binary, subcommands (k3s-like). See ARCHITECTURE.md.
#include "agent/agent.h"
#include "agent/runtime/shim.h"
#include "cmd/allocator.h"
#include "api/log.h"
#include "cmd/options.h"
#include "cmd/subcommands.h"
#include "controlplane-lite/server.h"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>
#include <unistd.h>

namespace {

std::atomic<bool> gStop{false};

void onSignal(int) { gStop = true; }

void installSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

constexpr const char* kUsage = R"(ferry: a Kubernetes-compatible cluster whose weight sits on the worker

Usage: ferry COMMAND [flags]

Commands:
  server      control plane (API server, store, scheduler, controllers) and this node's agent
  agent       join this node to a cluster and run its pods
  install     write and enable a systemd unit: ferry install server|agent [flags]
  uninstall   stop and remove the unit; --purge also removes everything Ferry made on the node
  image       local images: ferry image import FILE | ls | rm REF
  version     print the version

`ferry COMMAND --help` lists the command's flags and their defaults.
)";

int runServerCommand(const std::vector<std::string>& args) {
  ferry::cp::ServerConfig server;
  ferry::agent::AgentConfig agent;
  agent.dataDir = "/var/lib/ferry/agent";
  bool noAgent = false;
  auto flags = ferry::cmd::serverFlags(server, agent, noAgent);
  std::vector<std::string> positional;
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      fmt::print("Usage: ferry server [flags]\n\n{}", ferry::cmd::flagHelp(flags));
      return 0;
    }
  if (auto st = ferry::cmd::parseFlags(flags, args, positional); !st) {
    fmt::print(stderr, "ferry server: {}\n", st.error().message);
    return 2;
  }
  if (!positional.empty()) {
    fmt::print(stderr, "ferry server: unexpected argument \"{}\"\n", positional.front());
    return 2;
  }
  agent.clusterCIDR = server.clusterCIDR;
  agent.serviceCIDR = server.serviceCIDR;
  agent.clusterDNS = server.clusterDNS;
  agent.clusterDomain = server.clusterDomain;
  // The server's own node joins like any other (k3s does the same): its agent buys a
  // node certificate with the join token and is held to NodeRestriction.
  agent.tokenFile = server.dataDir + "/token";
  std::string port = server.listen.substr(server.listen.rfind(':') + 1);
  agent.server = "https://127.0.0.1:" + port;

  installSignalHandlers();
  ferry::log::info("allocator: {}", ferry::cmd::allocatorSummary());
  std::thread agentThread;
  std::atomic<bool> agentFailed{false};
  auto onReady = [&] {
    if (noAgent) {
      sd_notify(0, "READY=1");
      return;
    }
    agentThread = std::thread([&] {
      auto st = ferry::agent::runAgent(agent, gStop, [] { sd_notify(0, "READY=1"); });
      if (!st) {
        ferry::log::error("agent: {}", st.error().message);
        agentFailed = true;
        // A node whose agent cannot run is not ready: exit, so that systemd (Type=notify,
        // Restart=always) reports the failure instead of waiting for READY for ever.
        gStop = true;
      }
    });
  };
  auto st = ferry::cp::runServer(server, gStop, onReady);
  gStop = true;
  if (agentThread.joinable()) agentThread.join();
  if (!st) {
    ferry::log::error("server: {}", st.error().message);
    return 1;
  }
  return agentFailed ? 1 : 0;
}

int runAgentCommand(const std::vector<std::string>& args) {
  ferry::agent::AgentConfig agent;
  auto flags = ferry::cmd::agentFlags(agent);
  std::vector<std::string> positional;
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      fmt::print("Usage: ferry agent --server URL --token-file FILE [flags]\n\n{}", ferry::cmd::flagHelp(flags));
      return 0;
    }
  if (auto st = ferry::cmd::parseFlags(flags, args, positional); !st) {
    fmt::print(stderr, "ferry agent: {}\n", st.error().message);
    return 2;
  }
  if (agent.tokenFile.empty() && agent.kubeconfig.empty()) {
    fmt::print(stderr, "ferry agent: --token-file or --kubeconfig is required\n");
    return 2;
  }
  installSignalHandlers();
  ferry::log::info("allocator: {}", ferry::cmd::allocatorSummary());
  auto st = ferry::agent::runAgent(agent, gStop, [] { sd_notify(0, "READY=1"); });
  if (!st) {
    ferry::log::error("agent: {}", st.error().message);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Hidden: the per-container supervisor the agent re-executes (agent/runtime/shim.h).
  if (argc >= 2 && std::string(argv[1]) == ferry::runtime::kShimSubcommand)
    return ferry::runtime::runContainerShim(argc - 2, argv + 2);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    fmt::print("{}", kUsage);
    return args.empty() ? 2 : 0;
  }
  ferry::log::init(std::getenv("FERRY_LOG_LEVEL") ? std::getenv("FERRY_LOG_LEVEL") : "info");
  std::string command = args[0];
  args.erase(args.begin());
  // Before any thread starts: the server runs with jemalloc's thread caches (allocator.h).
  if (command == "server") ferry::cmd::reexecWithServerAllocator(argv);
  if (command == "server") return runServerCommand(args);
  if (command == "agent") return runAgentCommand(args);
  if (command == "install") return ferry::cmd::runInstall(args);
  if (command == "uninstall") return ferry::cmd::runUninstall(args);
  if (command == "image") return ferry::cmd::runImage(args);
  if (command == "version" || command == "--version") {
    fmt::print("ferry {}\n", FERRY_VERSION);
    return 0;
  }
  fmt::print(stderr, "ferry: unknown command \"{}\"\n\n{}", command, kUsage);
  return 2;
}
