// Stock kubectl against a real `ferry server --no-agent` on 127.0.0.1 (no
// agent: pods are deleted with --grace-period=0 --force). The full workflow runs
// on SQLite and on etcd (a private etcd on loopback, started and killed by PID);
// the other cases exercise the API layer only and run on SQLite.
#include "tests/e2e/apiserver/server_process.h"
#include "tests/unit/store/etcd_process.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

struct CommandResult {
  int exitCode = -1;
  std::string output;
};

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

pid_t spawn(const std::vector<std::string>& args, const std::string& logFile) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

void stopProcess(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

const char* kKubectl127 = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const char* kKubectl133 = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const char* kDispatcher = "/usr/bin/kubectl";

const char* kApp = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
)";

const char* kInvalid = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: -1
  selector:
    matchLabels:
      app: broken
  template:
    metadata:
      labels:
        app: broken
    spec:
      containers:
      - name: c
)";

class KubectlE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("FERRY_APISERVER_BINARY");
    if (!bin) bin = std::getenv("FERRY_BINARY");
    if (!bin || !fs::exists(bin)) GTEST_SKIP() << "FERRY_BINARY not built";
    if (!fs::exists(kKubectl133)) GTEST_SKIP() << kKubectl133 << " not installed";
    dir_ = fs::temp_directory_path() / ("ferry-e2e-api-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::vector<std::string> args = {bin, "server", "--no-agent", "--data-dir", (dir_ / "server").string(),
                                     "--listen", "127.0.0.1:" + std::to_string(ferry::e2e::freeLoopbackPort())};
    args.push_back("--datastore");
    args.push_back(datastore_);
    server_ = spawn(args, (dir_ / "server.log").string());
    kubeconfig_ = (dir_ / "server" / "kubeconfig").string();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(kubeconfig_) && kubectl(kKubectl133, "get --raw /readyz").exitCode == 0) return;
      if (::waitpid(server_, nullptr, WNOHANG) == server_) {
        server_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "ferry server did not become ready:\n" << serverLog();
  }
  void TearDown() override {
    stopProcess(server_);
    if (HasFailure()) std::fprintf(stderr, "--- server log ---\n%s\n", serverLog().substr(0, 20000).c_str());
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string serverLog() {
    std::ifstream in(dir_ / "server.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  CommandResult kubectl(const std::string& binary, const std::string& args) {
    return run("timeout 60 " + binary + " --kubeconfig " + kubeconfig_ + " " + args);
  }
  std::string writeFile(const std::string& name, const std::string& content) {
    auto path = dir_ / name;
    std::ofstream(path) << content;
    return path.string();
  }

  // The issue's kubectl walk-through; the same on every datastore.
  void runFullWorkflow();

  std::string datastore_ = "sqlite";
  fs::path dir_;
  pid_t server_ = -1;
  std::string kubeconfig_;
};

class KubectlE2EOnEtcd : public KubectlE2E {
 protected:
  void SetUp() override {
    if (!ferry::cp::testing::EtcdProcess::available()) GTEST_SKIP() << "etcd (Debian etcd-server) not installed";
    etcd_ = std::make_unique<ferry::cp::testing::EtcdProcess>();
    ASSERT_TRUE(etcd_->start()) << etcd_->error();
    datastore_ = "etcd://" + etcd_->endpoint();
    KubectlE2E::SetUp();
  }
  std::unique_ptr<ferry::cp::testing::EtcdProcess> etcd_;
};

#define EXPECT_OK(res) EXPECT_EQ((res).exitCode, 0) << (res).output
#define EXPECT_HAS(res, text) EXPECT_NE((res).output.find(text), std::string::npos) << (res).output

}  // namespace

TEST_F(KubectlE2E, Kubectl133FullWorkflow) { runFullWorkflow(); }

TEST_F(KubectlE2EOnEtcd, Kubectl133FullWorkflow) { runFullWorkflow(); }

void KubectlE2E::runFullWorkflow() {
  const std::string k = kKubectl133;
  auto version = kubectl(k, "version");
  EXPECT_OK(version);
  EXPECT_HAS(version, "Server Version: v1.32");

  std::string app = writeFile("app.yaml", kApp);
  auto applied = kubectl(k, "apply -f " + app);
  EXPECT_OK(applied);
  EXPECT_HAS(applied, "deployment.apps/web created");
  EXPECT_HAS(applied, "service/web created");
  EXPECT_HAS(applied, "configmap/web-config created");

  // Re-apply with a changed image: the ports list must survive the strategic merge.
  std::string changed = kApp;
  changed.replace(changed.find("nginx:1.25"), 10, "nginx:1.26");
  auto reapplied = kubectl(k, "apply -f " + writeFile("app2.yaml", changed));
  EXPECT_OK(reapplied);
  EXPECT_HAS(reapplied, "deployment.apps/web configured");
  auto image = kubectl(k, "get deploy web -o jsonpath={.spec.template.spec.containers[0].image}/{.spec.template.spec.containers[0].ports[0].containerPort}");
  EXPECT_OK(image);
  EXPECT_EQ(image.output, "nginx:1.26/80");

  // Server-side apply of the same content the client-side applies left (no field changes hands).
  auto ssa = kubectl(k, "apply --server-side -f " + writeFile("app3.yaml", changed));
  EXPECT_OK(ssa);
  EXPECT_HAS(ssa, "serverside-applied");

  auto table = kubectl(k, "get deployments");
  EXPECT_OK(table);
  EXPECT_HAS(table, "UP-TO-DATE");
  EXPECT_HAS(table, "web");
  auto wide = kubectl(k, "get svc -o wide");
  EXPECT_OK(wide);
  EXPECT_HAS(wide, "CLUSTER-IP");
  EXPECT_HAS(wide, "SELECTOR");
  EXPECT_HAS(wide, "app=web");
  EXPECT_HAS(wide, "80/TCP");
  auto all = kubectl(k, "get svc -A");
  EXPECT_OK(all);
  EXPECT_HAS(all, "kube-system");
  EXPECT_HAS(all, "kube-dns");
  EXPECT_HAS(all, "10.43.0.10");
  auto yaml = kubectl(k, "get configmap web-config -o yaml");
  EXPECT_OK(yaml);
  EXPECT_HAS(yaml, "greeting: hello");
  EXPECT_HAS(yaml, "kind: ConfigMap");
  auto labelled = kubectl(k, "get deploy -l app=web -o name");
  EXPECT_OK(labelled);
  EXPECT_HAS(labelled, "deployment.apps/web");
  auto nothing = kubectl(k, "get deploy -l app=other");
  EXPECT_OK(nothing);
  EXPECT_HAS(nothing, "No resources found");

  auto described = kubectl(k, "describe deployment web");
  EXPECT_OK(described);
  EXPECT_HAS(described, "nginx:1.2");
  auto describedSvc = kubectl(k, "describe service web");
  EXPECT_OK(describedSvc);
  EXPECT_HAS(describedSvc, "Selector:");

  auto label = kubectl(k, "label configmap web-config tier=frontend");
  EXPECT_OK(label);
  EXPECT_HAS(label, "labeled");
  auto scaled = kubectl(k, "scale deployment web --replicas=5");
  EXPECT_OK(scaled);
  EXPECT_HAS(scaled, "scaled");
  auto replicas = kubectl(k, "get deploy web -o jsonpath={.spec.replicas}");
  EXPECT_EQ(replicas.output, "5");

  // replace with a stale resourceVersion: Conflict.
  auto current = kubectl(k, "get configmap web-config -o json");
  ASSERT_EQ(current.exitCode, 0);
  EXPECT_OK(kubectl(k, "label configmap web-config bump=1"));
  auto stale = kubectl(k, "replace -f " + writeFile("stale.json", current.output));
  EXPECT_NE(stale.exitCode, 0);
  EXPECT_HAS(stale, "the object has been modified");

  // An invalid manifest lists each bad field.
  auto invalid = kubectl(k, "apply -f " + writeFile("invalid.yaml", kInvalid));
  EXPECT_NE(invalid.exitCode, 0);
  EXPECT_HAS(invalid, "is invalid");
  EXPECT_HAS(invalid, "spec.replicas");
  EXPECT_HAS(invalid, "spec.template.spec.containers[0].image: Required value");

  auto missing = kubectl(k, "get pod nope");
  EXPECT_NE(missing.exitCode, 0);
  EXPECT_HAS(missing, "pods \"nope\" not found");

  // get -w: an event for a change made while watching arrives.
  std::string watchOut = (dir_ / "watch.out").string();
  pid_t watcher = spawn({"/bin/sh", "-c", "exec " + k + " --kubeconfig " + kubeconfig_ + " get configmaps -w"}, watchOut);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_OK(kubectl(k, "apply -f " + writeFile("watched.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched-one\ndata:\n  a: b\n")));
  bool sawEvent = false;
  for (int i = 0; i < 100 && !sawEvent; ++i) {
    std::ifstream in(watchOut);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    sawEvent = text.find("watched-one") != std::string::npos;
    if (!sawEvent) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(sawEvent);
  EXPECT_EQ(::waitpid(watcher, nullptr, WNOHANG), 0) << "kubectl get -w exited: the stream must stay open";
  stopProcess(watcher);

  // A pod without an agent: forced deletion.
  EXPECT_OK(kubectl(k, "run lone --image=busybox --restart=Never"));
  auto pods = kubectl(k, "get pods -o wide");
  EXPECT_OK(pods);
  EXPECT_HAS(pods, "NOMINATED NODE");
  EXPECT_HAS(pods, "lone");
  auto podDelete = kubectl(k, "delete pod lone --grace-period=0 --force");
  EXPECT_OK(podDelete);

  auto deleted = kubectl(k, "delete -f " + app);
  EXPECT_OK(deleted);
  EXPECT_HAS(deleted, "deployment.apps \"web\" deleted");
  auto gone = kubectl(k, "get deploy web");
  EXPECT_NE(gone.exitCode, 0);
  EXPECT_HAS(gone, "not found");
}

// kubectl's typed `create` subcommands send protobuf bodies (and do not fall back to
// JSON on 415): the server decodes them; replies stay JSON.
TEST_F(KubectlE2E, CreateSubcommandsSendProtobuf) {
  const std::string k = kKubectl133;
  auto ns = kubectl(k, "create namespace team-a");
  EXPECT_OK(ns);
  EXPECT_HAS(ns, "namespace/team-a created");
  auto cm = kubectl(k, "create configmap web-config -n team-a --from-literal=greeting=hello --from-literal=mode=prod");
  EXPECT_OK(cm);
  EXPECT_HAS(cm, "configmap/web-config created");
  auto secret = kubectl(k, "create secret generic db-pass -n team-a --from-literal=user=admin");
  EXPECT_OK(secret);
  auto deploy = kubectl(k, "create deployment web -n team-a --image=nginx:1.25 --replicas=3 --port=80");
  EXPECT_OK(deploy);
  EXPECT_HAS(deploy, "deployment.apps/web created");
  auto svc = kubectl(k, "create service nodeport web -n team-a --tcp=80:8080");
  EXPECT_OK(svc);
  auto sa = kubectl(k, "create serviceaccount builder -n team-a");
  EXPECT_OK(sa);

  // The request really was protobuf (so this test proves the decoder, not a JSON path).
  auto verbose = kubectl(k, "create configmap probe -n team-a --from-literal=a=b -v=8");
  EXPECT_OK(verbose);
  EXPECT_HAS(verbose, "Content-Type: application/vnd.kubernetes.protobuf");

  auto data = kubectl(k, "get configmap web-config -n team-a -o jsonpath={.data.greeting}/{.data.mode}");
  EXPECT_OK(data);
  EXPECT_EQ(data.output, "hello/prod");
  auto user = kubectl(k, "get secret db-pass -n team-a -o jsonpath={.data.user}/{.type}");
  EXPECT_OK(user);
  EXPECT_EQ(user.output, "YWRtaW4=/Opaque");
  auto replicas = kubectl(k, "get deploy web -n team-a -o jsonpath={.spec.replicas}/{.spec.template.spec.containers[0].image}/{.spec.template.spec.containers[0].ports[0].containerPort}");
  EXPECT_OK(replicas);
  EXPECT_EQ(replicas.output, "3/nginx:1.25/80");
  auto ports = kubectl(k, "get svc web -n team-a -o jsonpath={.spec.type}/{.spec.ports[0].port}/{.spec.ports[0].targetPort}");
  EXPECT_OK(ports);
  EXPECT_EQ(ports.output, "NodePort/80/8080");
  auto nsLabel = kubectl(k, "get ns team-a -o jsonpath={.status.phase}");
  EXPECT_OK(nsLabel);
  EXPECT_EQ(nsLabel.output, "Active");
  auto hpa = kubectl(k, "autoscale deployment web -n team-a --min=2 --max=5 --cpu-percent=60");
  EXPECT_OK(hpa);
  auto hpaSpec = kubectl(k, "get hpa web -n team-a -o jsonpath={.spec.minReplicas}/{.spec.maxReplicas}/{.spec.metrics[0].resource.target.averageUtilization}");
  EXPECT_OK(hpaSpec);
  EXPECT_EQ(hpaSpec.output, "2/5/60");
  auto again = kubectl(k, "create configmap web-config -n team-a --from-literal=x=y");
  EXPECT_NE(again.exitCode, 0);
  EXPECT_HAS(again, "already exists");
}

TEST_F(KubectlE2E, Kubectl127AndDispatcher) {
  for (const char* k : {kKubectl127, kDispatcher}) {
    if (!fs::exists(k)) continue;
    SCOPED_TRACE(k);
    auto version = kubectl(k, "version");
    EXPECT_OK(version);
    std::string app = writeFile("app.yaml", kApp);
    auto applied = kubectl(k, "apply -f " + app);
    EXPECT_OK(applied);
    auto table = kubectl(k, "get deploy,svc,cm");
    EXPECT_OK(table);
    EXPECT_HAS(table, "deployment.apps/web");
    EXPECT_HAS(table, "service/web");
    auto nodes = kubectl(k, "get nodes");
    EXPECT_OK(nodes);
    auto deleted = kubectl(k, "delete -f " + app);
    EXPECT_OK(deleted);
  }
}

TEST_F(KubectlE2E, RealExampleManifests) {
  const char* shared = std::getenv("FERRY_SHARED_DIR");
  fs::path examples = fs::path(shared ? shared : "/work/shared") / "testdata/k8s-examples";
  if (!fs::exists(examples)) GTEST_SKIP() << "no " << examples;
  const std::string k = kKubectl133;
  auto guestbook = kubectl(k, "apply -f " + (examples / "web_guestbook_all-in-one_guestbook-all-in-one.yaml").string());
  EXPECT_OK(guestbook);
  EXPECT_HAS(guestbook, "deployment.apps/frontend created");
  auto listed = kubectl(k, "get all");
  EXPECT_OK(listed);
  EXPECT_HAS(listed, "service/frontend");
  auto rc = kubectl(k, "apply -f " + (examples / "web_guestbook-go_guestbook-controller.yaml").string());
  EXPECT_NE(rc.exitCode, 0);
  EXPECT_HAS(rc, "ReplicationController");
  auto hpa = kubectl(k, "apply -f " + (examples / "AI_vllm-deployment_hpa_horizontal-pod-autoscaler.yaml").string());
  EXPECT_OK(hpa);
  auto hpaTable = kubectl(k, "get hpa");
  EXPECT_OK(hpaTable);
  EXPECT_HAS(hpaTable, "REFERENCE");
}
