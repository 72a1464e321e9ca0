// Stage 2: pillar scatter (see pillar_scatter.h). Two launches: each valid pillar claims its cell with
// atomicMax of its index (highest index wins, independent of scheduling), then every output element
// gathers from the winning pillar or writes 0.
#include "pillar_scatter.h"

namespace {

constexpr int kThreads = 256;

bool valid_params(const EfScatterParams* p) {
    return p && p->num_pillars >= 0 && p->channels > 0 && p->nx > 0 && p->ny > 0 &&
           static_cast<long long>(p->nx) * p->ny * p->channels < (1LL << 31);
}

__global__ void claim(EfScatterParams p, const int* __restrict__ coords, const int* __restrict__ counts,
                      int* __restrict__ owner) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.num_pillars || counts[i] <= 0) return;
    const int iy = coords[2 * i], ix = coords[2 * i + 1];
    if (iy < 0 || iy >= p.ny || ix < 0 || ix >= p.nx) return;
    atomicMax(owner + iy * p.nx + ix, i);
}

__global__ void gather(EfScatterParams p, const float* __restrict__ feats, const int* __restrict__ owner,
                       float* __restrict__ bev) {
    const int ncell = p.nx * p.ny;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;  // k = c * ncell + cell
    if (k >= ncell * p.channels) return;
    const int c = k / ncell, cell = k - c * ncell;
    const int i = owner[cell];
    float v = 0.f;
    if (i >= 0)
        v = p.channels_first ? feats[static_cast<size_t>(c) * p.num_pillars + i]
                             : feats[static_cast<size_t>(i) * p.channels + c];
    bev[k] = v;
}

}  // namespace

extern "C" EF_API size_t ef_pillar_scatter_workspace_size(const EfScatterParams* params) {
    if (!valid_params(params)) return 0;
    return static_cast<size_t>(params->nx) * params->ny * sizeof(int);
}

extern "C" EF_API int ef_pillar_scatter(const EfScatterParams* params, const float* features, const int* coords,
                                        const int* counts, float* bev, void* workspace, size_t workspace_size,
                                        cudaStream_t stream) {
    if (!params || !bev || !workspace) return EF_ERR_NULL_POINTER;
    if (!valid_params(params)) return EF_ERR_BAD_PARAM;
    if (params->num_pillars > 0 && (!features || !coords || !counts)) return EF_ERR_NULL_POINTER;
    const EfScatterParams p = *params;
    const int ncell = p.nx * p.ny;
    if (workspace_size < static_cast<size_t>(ncell) * sizeof(int)) return EF_ERR_WORKSPACE;
    int* owner = static_cast<int*>(workspace);
    cudaMemsetAsync(owner, 0xff, static_cast<size_t>(ncell) * sizeof(int), stream);  // -1: no pillar
    if (p.num_pillars > 0)
        claim<<<(p.num_pillars + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p, coords, counts, owner);
    const int total = ncell * p.channels;
    gather<<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p, features, owner, bev);
    return cudaGetLastError() == cudaSuccess ? EF_OK : EF_ERR_CUDA;
}
