# mpirun as the CLI tests launch it (sourced): the array `mpi` to prefix with -np N.
# CI runs as root in a container on 2 cores: OpenMPI refuses root without the flag, and more
# ranks than cores without --oversubscribe. No binding: 4 ranks pinned to 2 cores crawl.
# OpenMPI 5 (PRRTE) reads the PRTE_ variables instead of the OMPI_ ones.
export OMPI_MCA_rmaps_base_oversubscribe=1 PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under the asan preset, leak detection is off for these runs (ASan's memory-error checks
# stay on): OpenMPI unloads its dlopen'd components at MPI_Finalize, so the allocations they
# keep are reported from "<unknown module>" and cannot be suppressed by library name.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
mpi=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
