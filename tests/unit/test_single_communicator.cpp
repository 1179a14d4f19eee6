// The single-process communicator's variable-count collectives: copies (or adds) of the one
// block, the count checks every backend makes, no traffic, and no scratch asked of a caller's
// allocator. The multi-rank behaviour is checked under mpirun by tests/mpi/comm_check.cpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "dist/communicator.hpp"

using namespace llmlab;

namespace {

// Fails the test on any allocation: the single backend needs no scratch.
class RefusingAllocator final : public ScratchAllocator {
 public:
  void* allocate(std::size_t) override {
    ++calls;
    return nullptr;
  }
  void release(void*) override { ++calls; }
  int calls = 0;
};

}  // namespace

TEST_CASE("single communicator: v-collectives copy or add the one block") {
  auto comm = make_single_communicator(30);
  RefusingAllocator alloc;
  comm->set_scratch_allocator(&alloc);
  const std::vector<float> in = {0.5f, -1.25f, 3.0f};
  const std::vector<std::int64_t> counts = {3};

  std::vector<float> out(3, 9.0f);
  comm->reduce_scatter_sum_v(in.data(), counts, out.data(), false);
  CHECK(out == in);
  comm->reduce_scatter_sum_v(in.data(), counts, out.data(), true);
  CHECK(out == std::vector<float>{1.0f, -2.5f, 6.0f});
  std::vector<float> x = in;
  comm->reduce_scatter_sum_v(x.data(), counts, x.data(), false);  // in place
  CHECK(x == in);

  std::vector<float> gathered(3, 9.0f);
  comm->all_gather_v_async(in.data(), counts, gathered.data()).wait();
  CHECK(gathered == in);
  comm->all_gather_v(gathered.data(), counts, gathered.data());  // in place
  CHECK(gathered == in);

  // An empty block touches nothing.
  comm->reduce_scatter_sum_v(nullptr, {0}, nullptr, true);
  comm->all_gather_v(nullptr, {0}, nullptr);

  CHECK(comm->traffic_bytes() == 0);
  comm->all_reduce_sum(x.data(), 3);
  comm->broadcast(x.data(), 3, 0);
  CHECK(comm->traffic_bytes() == 0);
  CHECK(alloc.calls == 0);
  comm->set_scratch_allocator(nullptr);
}

TEST_CASE("single communicator: v-collectives reject bad counts") {
  auto comm = make_single_communicator(30);
  float x[2] = {};
  CHECK_THROWS_AS(comm->reduce_scatter_sum_v(x, {1, 1}, x, false), Error);  // one count per rank
  CHECK_THROWS_AS(comm->all_gather_v(x, {}, x), Error);
  CHECK_THROWS_AS(comm->reduce_scatter_sum_v(x, {-1}, x, true), Error);
  CHECK_THROWS_AS(comm->all_gather_v(x, {-2}, x), Error);
}
