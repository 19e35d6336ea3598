#include "api/metrics.h"

#include <fmt/format.h>

#include <cmath>

namespace ferry::metrics {
namespace {

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

// `{a="x",le="0.5"}`: the series' labels plus one more.
std::string withLabel(const std::string& rendered, const std::string& name, const std::string& value) {
  std::string extra = name + "=\"" + escape(value) + "\"";
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

}  // namespace

Histogram::Histogram(std::vector<double> upperBounds)
    : bounds_(std::move(upperBounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulativeCounts() const {
  std::vector<std::uint64_t> out;
  std::uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out.push_back(running);
  }
  return out;
}

const std::vector<double>& latencyBuckets() {
  static const std::vector<double> buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return buckets;
}

std::string renderLabels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += labels[i].first + "=\"" + escape(labels[i].second) + "\"";
  }
  return out + "}";
}

Registry::Family& Registry::family(const std::string& name, const std::string& help, const char* type) {
  Family& f = families_[name];
  if (f.type.empty()) {
    f.help = help;
    f.type = type;
  }
  return f;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "counter").counters[renderLabels(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "gauge").gauges[renderLabels(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const Labels& labels,
                               const std::vector<double>& upperBounds) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "histogram").histograms[renderLabels(labels)];
  if (!slot) slot = std::make_unique<Histogram>(upperBounds);
  return *slot;
}

std::string Registry::render() const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type);
      for (const auto& [labels, c] : f.counters) out += fmt::format("{}{} {}\n", name, labels, number(c->value()));
      for (const auto& [labels, g] : f.gauges) out += fmt::format("{}{} {}\n", name, labels, number(g->value()));
      for (const auto& [labels, h] : f.histograms) {
        auto counts = h->cumulativeCounts();
        for (size_t i = 0; i < h->upperBounds().size(); ++i)
          out += fmt::format("{}_bucket{} {}\n", name, withLabel(labels, "le", number(h->upperBounds()[i])), counts[i]);
        out += fmt::format("{}_bucket{} {}\n", name, withLabel(labels, "le", "+Inf"), counts.back());
        out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, labels, number(h->sum()), name, labels, h->count());
      }
    }
  }
  return out;
}

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: threads may update metrics during exit
  return *r;
}

}  // namespace ferry::metrics
