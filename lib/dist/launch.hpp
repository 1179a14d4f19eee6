// Launch-environment detection: which launcher started this process, and where it sits
// (rank, world, rank on this node). A pure function over the environment so tests can feed
// maps; the communicator factory (communicator.hpp) turns the answer into a backend.
#pragma once

#include <map>
#include <string>

namespace llmlab {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;               // rank among the processes of this node (device selection)
  int local_world_size = 1;         // processes on this node
  std::string launcher = "single";  // "torchrun" | "mpirun" | "slurm" | "single"
  std::string master_addr;          // torchrun-style rendezvous; never bound by llmlab itself
  int master_port = 0;              // 0 when not given
  // OpenMPI or PMIx variables are present, so MPI_Init can join the job (mpirun, or srun
  // with --mpi=pmix), whatever launcher won the precedence above.
  bool mpi_bootstrap = false;
};

using Environment = std::map<std::string, std::string>;

// Detection order: torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), OpenMPI (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE), Slurm
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE
// with SLURM_NODEID), else a single process. A launcher is recognised by its rank or size
// variable; then its partners are required. Throws InputError naming the variable and value
// when a value is not a number, out of range, or a partner is missing.
LaunchInfo detect_launch(const Environment& env);

// The variables detect_launch reads, taken from this process's environment.
Environment launch_environment();

// detect_launch(launch_environment()).
LaunchInfo detect_launch();

// "rank 1/4 (local 1/2) via mpirun", for start-up logs.
std::string describe(const LaunchInfo& info);

}  // namespace llmlab
