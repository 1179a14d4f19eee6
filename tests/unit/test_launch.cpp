// Launch-environment detection: each launcher from an environment map, their precedence, and
// bad values rejected with the variable and value named.
#include <doctest/doctest.h>

#include <string>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "dist/launch.hpp"

using namespace llmlab;

namespace {

// The message of the InputError detect_launch throws, or "" when it does not throw.
std::string launch_error(const Environment& env) {
  try {
    detect_launch(env);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

const Environment torchrun_env = {{"RANK", "3"},
                                  {"WORLD_SIZE", "8"},
                                  {"LOCAL_RANK", "1"},
                                  {"LOCAL_WORLD_SIZE", "2"},
                                  {"MASTER_ADDR", "node0"},
                                  {"MASTER_PORT", "29500"}};
const Environment openmpi_env = {{"OMPI_COMM_WORLD_RANK", "2"},
                                 {"OMPI_COMM_WORLD_SIZE", "4"},
                                 {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                 {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
const Environment slurm_env = {{"SLURM_PROCID", "5"},
                               {"SLURM_NTASKS", "6"},
                               {"SLURM_LOCALID", "1"},
                               {"SLURM_NODEID", "2"},
                               {"SLURM_TASKS_PER_NODE", "2(x3)"}};

Environment with(Environment env, const std::string& key, const std::string& value) {
  env[key] = value;
  return env;
}
Environment without(Environment env, const std::string& key) {
  env.erase(key);
  return env;
}

}  // namespace

TEST_CASE("launch single process") {
  const LaunchInfo info = detect_launch(Environment{{"PATH", "/usr/bin"}});
  CHECK(info.launcher == "single");
  CHECK(info.rank == 0);
  CHECK(info.world_size == 1);
  CHECK(info.local_rank == 0);
  CHECK(info.local_world_size == 1);
  CHECK_FALSE(info.mpi_bootstrap);
}

TEST_CASE("launch torchrun") {
  const LaunchInfo info = detect_launch(torchrun_env);
  CHECK(info.launcher == "torchrun");
  CHECK(info.rank == 3);
  CHECK(info.world_size == 8);
  CHECK(info.local_rank == 1);
  CHECK(info.local_world_size == 2);
  CHECK(info.master_addr == "node0");
  CHECK(info.master_port == 29500);
  CHECK_FALSE(info.mpi_bootstrap);
  CHECK(describe(info) == "rank 3/8 (local 1/2) via torchrun");
}

TEST_CASE("launch torchrun world of one needs no master") {
  const LaunchInfo info =
      detect_launch(Environment{{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "1"}});
  CHECK(info.launcher == "torchrun");
  CHECK(info.world_size == 1);
  CHECK(info.master_port == 0);
}

TEST_CASE("launch openmpi") {
  const LaunchInfo info = detect_launch(openmpi_env);
  CHECK(info.launcher == "mpirun");
  CHECK(info.rank == 2);
  CHECK(info.world_size == 4);
  CHECK(info.local_rank == 0);
  CHECK(info.local_world_size == 2);
  CHECK(info.master_addr.empty());
  CHECK(info.mpi_bootstrap);
}

TEST_CASE("launch slurm with tasks per node list") {
  const LaunchInfo info = detect_launch(slurm_env);
  CHECK(info.launcher == "slurm");
  CHECK(info.rank == 5);
  CHECK(info.world_size == 6);
  CHECK(info.local_rank == 1);
  CHECK(info.local_world_size == 2);
  CHECK_FALSE(info.mpi_bootstrap);
  // Uneven nodes: this node's count comes from SLURM_NODEID.
  auto uneven = with(with(slurm_env, "SLURM_TASKS_PER_NODE", "3(x1),2,1"), "SLURM_NODEID", "1");
  CHECK(detect_launch(uneven).local_world_size == 2);
  // SLURM_NTASKS_PER_NODE wins over the list; srun with PMIx can bootstrap MPI.
  auto per_node = with(with(slurm_env, "SLURM_NTASKS_PER_NODE", "3"), "PMIX_RANK", "5");
  CHECK(detect_launch(per_node).local_world_size == 3);
  CHECK(detect_launch(per_node).mpi_bootstrap);
  // Same count on every node: SLURM_NODEID is not needed.
  CHECK(detect_launch(without(slurm_env, "SLURM_NODEID")).local_world_size == 2);
}

TEST_CASE("launch precedence torchrun then openmpi then slurm") {
  Environment all = torchrun_env;
  all.insert(openmpi_env.begin(), openmpi_env.end());
  all.insert(slurm_env.begin(), slurm_env.end());
  const LaunchInfo first = detect_launch(all);
  CHECK(first.launcher == "torchrun");
  CHECK(first.rank == 3);
  CHECK(first.mpi_bootstrap);  // OpenMPI variables are there too: MPI can still join the job
  Environment mpi_and_slurm = openmpi_env;
  mpi_and_slurm.insert(slurm_env.begin(), slurm_env.end());
  CHECK(detect_launch(mpi_and_slurm).launcher == "mpirun");
  CHECK(detect_launch(mpi_and_slurm).rank == 2);
  CHECK(detect_launch(slurm_env).launcher == "slurm");
}

TEST_CASE("launch bad values name the variable") {
  CHECK(launch_error(with(torchrun_env, "RANK", "8")).find("RANK=8 is not below WORLD_SIZE=8") != std::string::npos);
  CHECK(launch_error(with(torchrun_env, "RANK", "abc")).find("RANK=\"abc\" is not a non-negative integer") !=
        std::string::npos);
  CHECK(launch_error(with(torchrun_env, "WORLD_SIZE", "-2")).find("WORLD_SIZE=\"-2\"") != std::string::npos);
  CHECK(launch_error(with(torchrun_env, "WORLD_SIZE", "0")).find("WORLD_SIZE=0 is out of range") != std::string::npos);
  CHECK(launch_error(with(torchrun_env, "LOCAL_RANK", "2")).find("LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2") !=
        std::string::npos);
  CHECK(launch_error(with(torchrun_env, "LOCAL_WORLD_SIZE", "9")).find("LOCAL_WORLD_SIZE=9 exceeds WORLD_SIZE=8") !=
        std::string::npos);
  CHECK(launch_error(with(torchrun_env, "MASTER_PORT", "70000")).find("MASTER_PORT=70000 is out of range") !=
        std::string::npos);
  CHECK(launch_error(with(torchrun_env, "MASTER_PORT", "80 ")).find("MASTER_PORT=\"80 \"") != std::string::npos);
  CHECK(launch_error(with(openmpi_env, "OMPI_COMM_WORLD_RANK", "4"))
            .find("OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4") != std::string::npos);
  CHECK(launch_error(with(slurm_env, "SLURM_NTASKS", "1e3")).find("SLURM_NTASKS=\"1e3\"") != std::string::npos);
  CHECK(launch_error(with(slurm_env, "SLURM_TASKS_PER_NODE", "2(x3")).find("SLURM_TASKS_PER_NODE=\"2(x3\"") !=
        std::string::npos);
  CHECK(launch_error(with(slurm_env, "SLURM_NODEID", "3")).find("SLURM_NODEID=3") != std::string::npos);
  const auto uneven = without(with(slurm_env, "SLURM_TASKS_PER_NODE", "3,2,1"), "SLURM_NODEID");
  CHECK(launch_error(uneven).find("differs per node and SLURM_NODEID is missing") != std::string::npos);
}

TEST_CASE("launch missing partner variables") {
  CHECK(launch_error(without(torchrun_env, "WORLD_SIZE")).find("RANK is set but WORLD_SIZE is missing") !=
        std::string::npos);
  CHECK(launch_error(without(torchrun_env, "RANK")).find("WORLD_SIZE is set but RANK is missing") != std::string::npos);
  CHECK(launch_error(without(torchrun_env, "LOCAL_RANK")).find("LOCAL_RANK is missing") != std::string::npos);
  CHECK(launch_error(without(torchrun_env, "MASTER_ADDR")).find("MASTER_ADDR is missing") != std::string::npos);
  CHECK(launch_error(without(torchrun_env, "MASTER_PORT")).find("MASTER_PORT is missing") != std::string::npos);
  CHECK(launch_error(without(openmpi_env, "OMPI_COMM_WORLD_SIZE")).find("OMPI_COMM_WORLD_SIZE is missing") !=
        std::string::npos);
  CHECK(
      launch_error(without(openmpi_env, "OMPI_COMM_WORLD_LOCAL_SIZE")).find("OMPI_COMM_WORLD_LOCAL_SIZE is missing") !=
      std::string::npos);
  CHECK(launch_error(without(slurm_env, "SLURM_NTASKS")).find("SLURM_PROCID is set but SLURM_NTASKS is missing") !=
        std::string::npos);
  CHECK(launch_error(without(slurm_env, "SLURM_LOCALID")).find("SLURM_LOCALID is missing") != std::string::npos);
  CHECK(launch_error(without(slurm_env, "SLURM_TASKS_PER_NODE")).find("SLURM_TASKS_PER_NODE are both missing") !=
        std::string::npos);
  // Every message says which launcher it was reading.
  CHECK(launch_error(without(slurm_env, "SLURM_NTASKS")).find("launch environment (slurm)") != std::string::npos);
}

TEST_CASE("launch factory picks a backend") {
  auto single = make_communicator(detect_launch(Environment{}), 30);
  CHECK(std::string(single->backend()) == "single");
  CHECK(single->world_size() == 1);
  float x[3] = {1, 2, 3}, y[3] = {};
  single->all_reduce_sum(x, 3);
  CHECK(x[2] == 3);
  single->reduce_scatter_sum(x, y, 3);
  CHECK(y[1] == 2);
  single->check_same("recipe", 42);
  CHECK(shard_elements(7, 4) == 2);
  CHECK(shard_elements(8, 4) == 2);
  CHECK(shard_elements(1, 4) == 1);
  // torchrun-style without MPI variables: a clear error, and MASTER_PORT is never bound.
  try {
    make_communicator(detect_launch(torchrun_env), 30);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("launch with `mpirun -np 8`") != std::string::npos);
  }
  CHECK_THROWS_AS(make_communicator(detect_launch(Environment{}), 0), Error);
}
