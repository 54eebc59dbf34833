#include <unistd.h>

#include <cctype>
#include <cstring>

#include "core/sys/io.h"
#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {
namespace {

// "64m", "1g", "1024", "-1" (runc's sizes, powers of 1024).
bool parse_size(const std::string& text, int64_t* out) {
  if (text == "-1") {
    *out = -1;
    return true;
  }
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) digits++;
  if (digits == 0 || digits > 15) return false;
  int64_t n = std::stoll(text.substr(0, digits));
  std::string unit = text.substr(digits);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.ends_with("b")) unit.pop_back();
  static const char* kUnits = "kmgt";
  if (unit.empty()) {
    *out = n;
    return true;
  }
  const char* pos = unit.size() == 1 ? std::strchr(kUnits, unit[0]) : nullptr;
  if (!pos) return false;
  for (const char* p = kUnits; p <= pos; p++) n *= 1024;
  *out = n;
  return true;
}

}  // namespace

int cmd_update(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {
      {{"-r", "--resources"}, true}, {{"--memory"}, true},       {{"--memory-reservation"}, true},
      {{"--memory-swap"}, true},     {{"--cpu-shares"}, true},   {{"--cpu-quota"}, true},
      {{"--cpu-period"}, true},      {{"--cpuset-cpus"}, true},  {{"--cpuset-mems"}, true},
      {{"--pids-limit"}, true},      {{"--blkio-weight"}, true}, {{"--kernel-memory"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, true);
  if (!args) return oci::report_error("update: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().size() != 1) return oci::report_error("update: give exactly one container id");
  if (args->has("kernel-memory")) return oci::report_error("update: --kernel-memory is not supported by cryo");
  cgroup::Resources r;
  if (auto file = args->get("resources")) {
    auto text = *file == "-" ? read_fd(0) : read_file(*file);
    if (!text.ok()) return oci::report_error("update --resources: " + text.error().message());
    auto parsed = oci::parse_resources(*text);
    if (!parsed.ok()) return oci::report_error("update --resources: " + parsed.error().message());
    r = *parsed;
    r.devices.clear();  // device rules are fixed at create, as runc does
  }
  struct SizeFlag {
    const char* name;
    std::optional<int64_t>* field;
  };
  for (auto [name, field] : {SizeFlag{"memory", &r.memory_limit}, SizeFlag{"memory-reservation", &r.memory_reservation},
                             SizeFlag{"memory-swap", &r.memory_swap}, SizeFlag{"cpu-quota", &r.cpu_quota},
                             SizeFlag{"pids-limit", &r.pids_limit}}) {
    if (auto v = args->get(name)) {
      int64_t n = 0;
      if (!parse_size(*v, &n)) return oci::report_error(std::string("update: bad --") + name + " '" + *v + "'");
      *field = n;
    }
  }
  for (auto [name, field] : {std::pair{"cpu-shares", &r.cpu_shares}, std::pair{"cpu-period", &r.cpu_period}}) {
    if (auto v = args->get(name)) {
      int64_t n = 0;
      if (!parse_size(*v, &n) || n < 0) return oci::report_error(std::string("update: bad --") + name + " '" + *v + "'");
      *field = static_cast<uint64_t>(n);
    }
  }
  if (auto v = args->get("blkio-weight")) {
    int64_t n = 0;
    if (!parse_size(*v, &n) || n < 10 || n > 1000) return oci::report_error("update: --blkio-weight must be 10..1000");
    r.blkio_weight = static_cast<uint16_t>(n);
  }
  if (auto v = args->get("cpuset-cpus")) r.cpuset_cpus = *v;
  if (auto v = args->get("cpuset-mems")) r.cpuset_mems = *v;
  if (auto s = oci::update_container(g.root, args->positional()[0], r); !s.ok()) return oci::report_error(s.error().message());
  return 0;
}

}  // namespace cryo::cli
