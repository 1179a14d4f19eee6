// Launch-environment detection (see launch.hpp): torchrun, OpenMPI, Slurm, single process.
#include "dist/launch.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <vector>

#include "core/error.hpp"

namespace llmlab {
namespace {

constexpr const char* kVariables[] = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_TASKS_PER_NODE",
};

const std::string* find(const Environment& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

[[noreturn]] void fail(const std::string& launcher, const std::string& problem) {
  throw InputError(fmt::format("launch environment ({}): {}", launcher, problem));
}

// A decimal integer in [lo, hi], the whole string, no sign or spaces.
int parse_int(const std::string& launcher, const std::string& name, const std::string& value, int lo, int hi) {
  int out = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (value.empty() || value[0] == '-' || value[0] == '+' || ec != std::errc() || ptr != end)
    fail(launcher, fmt::format("{}={:?} is not a non-negative integer", name, value));
  if (out < lo || out > hi) fail(launcher, fmt::format("{}={} is out of range [{}, {}]", name, value, lo, hi));
  return out;
}

int require_int(const Environment& env, const std::string& launcher, const std::string& name,
                const std::string& partner, int lo, int hi) {
  const std::string* v = find(env, name);
  if (!v) fail(launcher, fmt::format("{} is set but {} is missing", partner, name));
  return parse_int(launcher, name, *v, lo, hi);
}

void check_ranks(const std::string& launcher, const LaunchInfo& info, const char* rank_name, const char* world_name,
                 const char* local_rank_name, const char* local_world_name) {
  if (info.rank >= info.world_size)
    fail(launcher, fmt::format("{}={} is not below {}={}", rank_name, info.rank, world_name, info.world_size));
  if (info.local_rank >= info.local_world_size)
    fail(launcher, fmt::format("{}={} is not below {}={}", local_rank_name, info.local_rank, local_world_name,
                               info.local_world_size));
  if (info.local_world_size > info.world_size)
    fail(launcher,
         fmt::format("{}={} exceeds {}={}", local_world_name, info.local_world_size, world_name, info.world_size));
}

constexpr int kMaxRanks = 1 << 24;

LaunchInfo torchrun(const Environment& env) {
  const std::string l = "torchrun";
  LaunchInfo info;
  info.launcher = l;
  const bool has_rank = find(env, "RANK") != nullptr;
  info.rank = require_int(env, l, "RANK", "WORLD_SIZE", 0, kMaxRanks);
  info.world_size = require_int(env, l, "WORLD_SIZE", "RANK", 1, kMaxRanks);
  const std::string who = has_rank ? "RANK" : "WORLD_SIZE";
  info.local_rank = require_int(env, l, "LOCAL_RANK", who, 0, kMaxRanks);
  info.local_world_size = require_int(env, l, "LOCAL_WORLD_SIZE", who, 1, kMaxRanks);
  check_ranks(l, info, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE");
  const std::string* addr = find(env, "MASTER_ADDR");
  const std::string* port = find(env, "MASTER_PORT");
  if (info.world_size > 1 && (!addr || addr->empty()))
    fail(l, fmt::format("WORLD_SIZE={} but MASTER_ADDR is missing", info.world_size));
  if (info.world_size > 1 && !port) fail(l, fmt::format("WORLD_SIZE={} but MASTER_PORT is missing", info.world_size));
  if (addr) info.master_addr = *addr;
  if (port) info.master_port = parse_int(l, "MASTER_PORT", *port, 1, 65535);
  return info;
}

LaunchInfo openmpi(const Environment& env) {
  const std::string l = "mpirun";
  LaunchInfo info;
  info.launcher = l;
  const std::string who = find(env, "OMPI_COMM_WORLD_RANK") ? "OMPI_COMM_WORLD_RANK" : "OMPI_COMM_WORLD_SIZE";
  info.rank = require_int(env, l, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", 0, kMaxRanks);
  info.world_size = require_int(env, l, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", 1, kMaxRanks);
  info.local_rank = require_int(env, l, "OMPI_COMM_WORLD_LOCAL_RANK", who, 0, kMaxRanks);
  info.local_world_size = require_int(env, l, "OMPI_COMM_WORLD_LOCAL_SIZE", who, 1, kMaxRanks);
  check_ranks(l, info, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
              "OMPI_COMM_WORLD_LOCAL_SIZE");
  return info;
}

// SLURM_TASKS_PER_NODE: "4(x2),3" = tasks on each node in node order: 4, 4, 3.
std::vector<int> expand_tasks_per_node(const std::string& value) {
  const std::string l = "slurm";
  std::vector<int> out;
  std::size_t pos = 0;
  while (pos <= value.size()) {
    std::size_t comma = value.find(',', pos);
    if (comma == std::string::npos) comma = value.size();
    std::string item = value.substr(pos, comma - pos);
    int repeat = 1;
    if (auto paren = item.find("(x"); paren != std::string::npos) {
      if (item.back() != ')') fail(l, fmt::format("SLURM_TASKS_PER_NODE={:?} is not like 4(x2),3", value));
      repeat =
          parse_int(l, "SLURM_TASKS_PER_NODE repeat", item.substr(paren + 2, item.size() - paren - 3), 1, kMaxRanks);
      item = item.substr(0, paren);
    }
    const int tasks = parse_int(l, "SLURM_TASKS_PER_NODE", item, 1, kMaxRanks);
    if (out.size() + static_cast<std::size_t>(repeat) > static_cast<std::size_t>(kMaxRanks))
      fail(l, fmt::format("SLURM_TASKS_PER_NODE={:?} lists too many nodes", value));
    out.insert(out.end(), static_cast<std::size_t>(repeat), tasks);
    pos = comma + 1;
  }
  return out;
}

LaunchInfo slurm(const Environment& env) {
  const std::string l = "slurm";
  LaunchInfo info;
  info.launcher = l;
  info.rank = require_int(env, l, "SLURM_PROCID", "SLURM_NTASKS", 0, kMaxRanks);
  info.world_size = require_int(env, l, "SLURM_NTASKS", "SLURM_PROCID", 1, kMaxRanks);
  info.local_rank = require_int(env, l, "SLURM_LOCALID", "SLURM_PROCID", 0, kMaxRanks);
  const char* local_world_name = "SLURM_NTASKS_PER_NODE";
  if (const std::string* per_node = find(env, "SLURM_NTASKS_PER_NODE")) {
    info.local_world_size = parse_int(l, "SLURM_NTASKS_PER_NODE", *per_node, 1, kMaxRanks);
  } else if (const std::string* list = find(env, "SLURM_TASKS_PER_NODE")) {
    local_world_name = "SLURM_TASKS_PER_NODE";
    const std::vector<int> tasks = expand_tasks_per_node(*list);
    if (const std::string* node = find(env, "SLURM_NODEID")) {
      const int id = parse_int(l, "SLURM_NODEID", *node, 0, kMaxRanks);
      if (static_cast<std::size_t>(id) >= tasks.size())
        fail(l, fmt::format("SLURM_NODEID={} but SLURM_TASKS_PER_NODE={:?} lists {} node(s)", id, *list, tasks.size()));
      info.local_world_size = tasks[static_cast<std::size_t>(id)];
    } else {
      for (int t : tasks)
        if (t != tasks[0])
          fail(l, fmt::format("SLURM_TASKS_PER_NODE={:?} differs per node and SLURM_NODEID is missing", *list));
      info.local_world_size = tasks[0];
    }
  } else {
    fail(l, "SLURM_PROCID is set but SLURM_NTASKS_PER_NODE and SLURM_TASKS_PER_NODE are both missing");
  }
  check_ranks(l, info, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", local_world_name);
  return info;
}

}  // namespace

LaunchInfo detect_launch(const Environment& env) {
  LaunchInfo info;
  if (find(env, "RANK") || find(env, "WORLD_SIZE")) {
    info = torchrun(env);
  } else if (find(env, "OMPI_COMM_WORLD_RANK") || find(env, "OMPI_COMM_WORLD_SIZE")) {
    info = openmpi(env);
  } else if (find(env, "SLURM_PROCID")) {
    info = slurm(env);
  }
  info.mpi_bootstrap = find(env, "OMPI_COMM_WORLD_SIZE") || find(env, "PMIX_RANK") || find(env, "PMI_RANK");
  return info;
}

Environment launch_environment() {
  Environment env;
  for (const char* name : kVariables)
    if (const char* v = std::getenv(name)) env[name] = v;
  return env;
}

LaunchInfo detect_launch() { return detect_launch(launch_environment()); }

std::string describe(const LaunchInfo& info) {
  return fmt::format("rank {}/{} (local {}/{}) via {}", info.rank, info.world_size, info.local_rank,
                     info.local_world_size, info.launcher);
}

}  // namespace llmlab
