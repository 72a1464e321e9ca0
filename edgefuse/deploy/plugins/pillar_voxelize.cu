// Stage 1: pillar voxelization (see pillar_voxelize.h for the rule and the layouts).
//
// Steps, all on `stream`, deterministic (the only atomics are integer counts):
//   1. per point: its cell (or -1 when dropped); per-cell point counts (atomicAdd);
//   2. per cell: a 64-bit key ((INT_MAX - count) << 32 | cell); one CUB radix sort of all cells gives the
//      pillar order (count descending, cell ascending); the first max_pillars occupied cells get a slot;
//   3. a stable CUB radix sort of (cell, point index) groups each cell's points in input order; the rank of
//      a point inside its group decides whether it is among the first max_points kept.
#include "pillar_voxelize.h"

#include <climits>
#include <cstdint>

#include <cub/device/device_radix_sort.cuh>

namespace {

constexpr int kThreads = 256;

inline int blocks_for(long long n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

inline size_t align_up(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

struct Layout {  // byte offsets into the workspace
    size_t cell_count, cell_slot, cell_start, cell_keys_in, cell_keys_out, pt_cell_in, pt_cell_out,
        pt_idx_in, pt_idx_out, temp, temp_bytes, total;
};

bool valid_params(const EfVoxelizeParams* p) {
    return p && p->nx > 0 && p->ny > 0 && p->max_pillars > 0 && p->max_points > 0 && p->num_features >= 3 &&
           p->pillar_size[0] > 0.f && p->pillar_size[1] > 0.f &&
           static_cast<long long>(p->nx) * p->ny < (1LL << 31);
}

Layout make_layout(const EfVoxelizeParams* p, int max_n) {
    const size_t ncell = static_cast<size_t>(p->nx) * p->ny;
    const size_t n = static_cast<size_t>(max_n > 0 ? max_n : 1);
    size_t t1 = 0, t2 = 0;
    cub::DeviceRadixSort::SortKeys(nullptr, t1, static_cast<const unsigned long long*>(nullptr),
                                   static_cast<unsigned long long*>(nullptr), static_cast<int>(ncell));
    cub::DeviceRadixSort::SortPairs(nullptr, t2, static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
                                    static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
                                    static_cast<int>(n));
    Layout l{};
    size_t off = 0;
    l.cell_count = off;    off += align_up(ncell * sizeof(int));
    l.cell_slot = off;     off += align_up(ncell * sizeof(int));
    l.cell_start = off;    off += align_up(ncell * sizeof(int));
    l.cell_keys_in = off;  off += align_up(ncell * sizeof(unsigned long long));
    l.cell_keys_out = off; off += align_up(ncell * sizeof(unsigned long long));
    l.pt_cell_in = off;    off += align_up(n * sizeof(int));
    l.pt_cell_out = off;   off += align_up(n * sizeof(int));
    l.pt_idx_in = off;     off += align_up(n * sizeof(int));
    l.pt_idx_out = off;    off += align_up(n * sizeof(int));
    l.temp = off;
    l.temp_bytes = t1 > t2 ? t1 : t2;
    off += align_up(l.temp_bytes);
    l.total = off;
    return l;
}

__global__ void point_cells(EfVoxelizeParams p, const float* __restrict__ pts, int n, int* __restrict__ cell_of,
                            int* __restrict__ idx, int* __restrict__ cell_count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* q = pts + static_cast<size_t>(i) * p.num_features;
    const float x = q[0], y = q[1], z = q[2];
    const int ncell = p.nx * p.ny;
    int cell = ncell;  // dropped points sort after every real cell
    if (p.lo[0] <= x && x < p.hi[0] && p.lo[1] <= y && y < p.hi[1] && p.lo[2] <= z && z < p.hi[2]) {
        // __fsub_rn/__fdiv_rn: IEEE float32, never contracted, so the cell matches the CPU voxelizer bit for bit
        int ix = static_cast<int>(__fdiv_rn(__fsub_rn(x, p.lo[0]), p.pillar_size[0]));
        int iy = static_cast<int>(__fdiv_rn(__fsub_rn(y, p.lo[1]), p.pillar_size[1]));
        ix = min(ix, p.nx - 1);
        iy = min(iy, p.ny - 1);
        cell = iy * p.nx + ix;
        atomicAdd(cell_count + cell, 1);
    }
    cell_of[i] = cell;
    idx[i] = i;
}

__global__ void cell_keys(int ncell, const int* __restrict__ cell_count, unsigned long long* __restrict__ keys) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= ncell) return;
    const unsigned long long inv = static_cast<unsigned long long>(INT_MAX - cell_count[c]);
    keys[c] = (inv << 32) | static_cast<unsigned long long>(c);
}

// one thread per output pillar slot j < max_pillars
__global__ void assign_slots(EfVoxelizeParams p, int ncell, const unsigned long long* __restrict__ sorted,
                             int* __restrict__ cell_slot, int* __restrict__ coords, int* __restrict__ counts,
                             int* __restrict__ num_pillars) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.max_pillars) return;
    int count = 0, cell = 0;
    if (j < ncell) {
        const unsigned long long k = sorted[j];
        count = INT_MAX - static_cast<int>(k >> 32);
        cell = static_cast<int>(k & 0xffffffffULL);
    }
    if (count > 0) {
        cell_slot[cell] = j;
        coords[2 * j] = cell / p.nx;
        coords[2 * j + 1] = cell % p.nx;
        counts[j] = min(count, p.max_points);
        // the last occupied slot reports the pillar count
        bool last = (j + 1 == p.max_pillars) || (j + 1 >= ncell);
        if (!last) last = (INT_MAX - static_cast<int>(sorted[j + 1] >> 32)) == 0;
        if (last) *num_pillars = j + 1;
    } else {
        coords[2 * j] = 0;
        coords[2 * j + 1] = 0;
        counts[j] = 0;
        if (j == 0) *num_pillars = 0;
    }
}

// after the stable sort by cell: mark where each cell's run of points starts
__global__ void run_starts(int n, int ncell, const int* __restrict__ cell_sorted, int* __restrict__ cell_start) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const int c = cell_sorted[k];
    if (c < ncell && (k == 0 || cell_sorted[k - 1] != c)) cell_start[c] = k;
}

__global__ void copy_points(EfVoxelizeParams p, int n, int ncell, const float* __restrict__ pts,
                            const int* __restrict__ cell_sorted, const int* __restrict__ idx_sorted,
                            const int* __restrict__ cell_start, const int* __restrict__ cell_slot,
                            float* __restrict__ out) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const int c = cell_sorted[k];
    if (c >= ncell) return;
    const int slot = cell_slot[c];
    const int rank = k - cell_start[c];
    if (slot < 0 || rank >= p.max_points) return;
    const int F = p.num_features;
    const float* src = pts + static_cast<size_t>(idx_sorted[k]) * F;
    float* dst = out + (static_cast<size_t>(slot) * p.max_points + rank) * F;
    for (int f = 0; f < F; ++f) dst[f] = src[f];
}

int bits_for(int v) {  // bits needed to hold 0..v
    int b = 1;
    while ((1LL << b) <= v) ++b;
    return b;
}

}  // namespace

extern "C" EF_API size_t ef_pillar_voxelize_workspace_size(const EfVoxelizeParams* params, int max_input_points) {
    if (!valid_params(params) || max_input_points < 0) return 0;
    return make_layout(params, max_input_points).total;
}

extern "C" EF_API int ef_pillar_voxelize(const EfVoxelizeParams* params, const float* points, int n,
                                         float* out_points, int* out_coords, int* out_counts,
                                         int* out_num_pillars, void* workspace, size_t workspace_size,
                                         cudaStream_t stream) {
    if (!params || !out_points || !out_coords || !out_counts || !out_num_pillars || !workspace)
        return EF_ERR_NULL_POINTER;
    if (!valid_params(params) || n < 0) return EF_ERR_BAD_PARAM;
    if (n > 0 && !points) return EF_ERR_NULL_POINTER;
    const EfVoxelizeParams p = *params;
    const Layout l = make_layout(&p, n);
    if (workspace_size < l.total) return EF_ERR_WORKSPACE;
    char* ws = static_cast<char*>(workspace);
    int* cell_count = reinterpret_cast<int*>(ws + l.cell_count);
    int* cell_slot = reinterpret_cast<int*>(ws + l.cell_slot);
    int* cell_start = reinterpret_cast<int*>(ws + l.cell_start);
    auto* keys_in = reinterpret_cast<unsigned long long*>(ws + l.cell_keys_in);
    auto* keys_out = reinterpret_cast<unsigned long long*>(ws + l.cell_keys_out);
    int* pc_in = reinterpret_cast<int*>(ws + l.pt_cell_in);
    int* pc_out = reinterpret_cast<int*>(ws + l.pt_cell_out);
    int* pi_in = reinterpret_cast<int*>(ws + l.pt_idx_in);
    int* pi_out = reinterpret_cast<int*>(ws + l.pt_idx_out);
    void* temp = ws + l.temp;
    size_t temp_bytes = l.temp_bytes;
    const int ncell = p.nx * p.ny;
    const size_t P = static_cast<size_t>(p.max_pillars);

    cudaMemsetAsync(out_points, 0, P * p.max_points * p.num_features * sizeof(float), stream);
    cudaMemsetAsync(cell_count, 0, ncell * sizeof(int), stream);
    cudaMemsetAsync(cell_slot, 0xff, ncell * sizeof(int), stream);  // -1: cell has no slot
    if (n > 0)
        point_cells<<<blocks_for(n), kThreads, 0, stream>>>(p, points, n, pc_in, pi_in, cell_count);
    cell_keys<<<blocks_for(ncell), kThreads, 0, stream>>>(ncell, cell_count, keys_in);
    if (cub::DeviceRadixSort::SortKeys(temp, temp_bytes, keys_in, keys_out, ncell, 0, 64, stream) != cudaSuccess)
        return EF_ERR_CUDA;
    assign_slots<<<blocks_for(p.max_pillars), kThreads, 0, stream>>>(p, ncell, keys_out, cell_slot, out_coords,
                                                                     out_counts, out_num_pillars);
    if (n > 0) {
        temp_bytes = l.temp_bytes;
        if (cub::DeviceRadixSort::SortPairs(temp, temp_bytes, pc_in, pc_out, pi_in, pi_out, n, 0,
                                            bits_for(ncell), stream) != cudaSuccess)
            return EF_ERR_CUDA;
        run_starts<<<blocks_for(n), kThreads, 0, stream>>>(n, ncell, pc_out, cell_start);
        copy_points<<<blocks_for(n), kThreads, 0, stream>>>(p, n, ncell, points, pc_out, pi_out, cell_start,
                                                            cell_slot, out_points);
    }
    return cudaGetLastError() == cudaSuccess ? EF_OK : EF_ERR_CUDA;
}
