// `apiserver_standalone server --no-agent --data-dir D --listen A [--datastore S]`:
// the API server alone (what `ferry server --no-agent` runs), so that the
// kubectl e2e suite can run where the whole ferry binary is not built.
#include "api/log.h"
#include "controlplane-lite/server.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

namespace {
std::atomic<bool> gStop{false};
void onSignal(int) { gStop = true; }
}  // namespace

int main(int argc, char** argv) {
  ferry::log::init("info");
  ferry::cp::ServerConfig config;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "server" || a == "--no-agent") continue;
    if (a == "--data-dir") config.dataDir = next();
    else if (a == "--listen") config.listen = next();
    else if (a == "--datastore") config.datastore = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  auto st = ferry::cp::runServer(config, gStop, [] { ferry::log::info("ready"); });
  if (!st) {
    std::fprintf(stderr, "server: %s\n", st.error().message.c_str());
    return 1;
  }
  return 0;
}
