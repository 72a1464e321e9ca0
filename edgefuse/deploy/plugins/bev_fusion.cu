// Stage 3: camera lifting + gated fusion (see bev_fusion.h). No atomics: every output element is owned
// by one thread, so results are deterministic. The projection and sampling coordinates use explicitly
// rounded float32 operations (__fmul_rn/__fadd_rn/__fdiv_rn, never contracted into FMAs) so that the
// "is the sample inside the image" decisions agree with the float32 numpy reference.
#include "bev_fusion.h"

#include <cmath>

namespace {

constexpr int kThreads = 256;

bool valid_lift(const EfCameraLiftParams* p) {
    return p && p->nx > 0 && p->ny > 0 && p->cell > 0.f && p->num_cameras >= 0 && p->channels > 0 &&
           p->feat_h > 0 && p->feat_w > 0 && p->image_h > 0 && p->image_w > 0 && p->num_heights > 0 &&
           p->num_heights <= EF_MAX_HEIGHTS && static_cast<long long>(p->nx) * p->ny * p->channels < (1LL << 31);
}

__global__ void lift(EfCameraLiftParams p, const float* __restrict__ feats, const float* __restrict__ proj,
                     const float* __restrict__ cam_valid, float* __restrict__ bev) {
    const int ncell = p.nx * p.ny;
    const int cell = blockIdx.x * blockDim.x + threadIdx.x;
    if (cell >= ncell) return;
    const int iy = cell / p.nx, ix = cell - iy * p.nx;
    const float x = __fadd_rn(p.origin_x, __fmul_rn(static_cast<float>(ix) + 0.5f, p.cell));
    const float y = __fadd_rn(p.origin_y, __fmul_rn(static_cast<float>(iy) + 0.5f, p.cell));
    const float Wi = static_cast<float>(p.image_w), Hi = static_cast<float>(p.image_h);
    const float Wf = static_cast<float>(p.feat_w), Hf = static_cast<float>(p.feat_h);
    const size_t plane = static_cast<size_t>(p.feat_h) * p.feat_w;
    for (int c = 0; c < p.channels; ++c) bev[static_cast<size_t>(c) * ncell + cell] = 0.f;
    int n = 0;
    for (int k = 0; k < p.num_cameras; ++k) {
        if (cam_valid[k] == 0.f) continue;
        const float* P = proj + 12 * k;
        const float* F = feats + static_cast<size_t>(k) * p.channels * plane;
        for (int h = 0; h < p.num_heights; ++h) {
            const float z = p.heights[h];
            float r[3];
            for (int row = 0; row < 3; ++row) {
                const float* q = P + 4 * row;
                r[row] = __fadd_rn(__fadd_rn(__fadd_rn(__fmul_rn(q[0], x), __fmul_rn(q[1], y)), __fmul_rn(q[2], z)),
                                   q[3]);
            }
            const float d = r[2];
            if (!(d > p.min_depth)) continue;
            const float u = __fdiv_rn(r[0], d), v = __fdiv_rn(r[1], d);
            if (!(u >= 0.f && u <= Wi - 1.f && v >= 0.f && v <= Hi - 1.f)) continue;
            // torch grid_sample(align_corners=False, padding_mode="border") on the normalized grid
            const float gx = __fsub_rn(__fmul_rn(__fdiv_rn(__fadd_rn(u, 0.5f), Wi), 2.f), 1.f);
            const float gy = __fsub_rn(__fmul_rn(__fdiv_rn(__fadd_rn(v, 0.5f), Hi), 2.f), 1.f);
            float fx = __fdiv_rn(__fsub_rn(__fmul_rn(__fadd_rn(gx, 1.f), Wf), 1.f), 2.f);
            float fy = __fdiv_rn(__fsub_rn(__fmul_rn(__fadd_rn(gy, 1.f), Hf), 1.f), 2.f);
            fx = fminf(fmaxf(fx, 0.f), Wf - 1.f);
            fy = fminf(fmaxf(fy, 0.f), Hf - 1.f);
            const float x0f = floorf(fx), y0f = floorf(fy);
            const int x0 = static_cast<int>(x0f), y0 = static_cast<int>(y0f);
            const int x1 = x0 + 1, y1 = y0 + 1;
            const float ax = __fsub_rn(fx, x0f), bx = __fsub_rn(x0f + 1.f, fx);
            const float ay = __fsub_rn(fy, y0f), by = __fsub_rn(y0f + 1.f, fy);
            const float w00 = __fmul_rn(bx, by), w01 = __fmul_rn(ax, by);  // (y0,x0), (y0,x1)
            const float w10 = __fmul_rn(bx, ay), w11 = __fmul_rn(ax, ay);  // (y1,x0), (y1,x1)
            const bool in_x1 = x1 < p.feat_w, in_y1 = y1 < p.feat_h;
            for (int c = 0; c < p.channels; ++c) {
                const float* Fc = F + static_cast<size_t>(c) * plane;
                float s = __fmul_rn(Fc[y0 * p.feat_w + x0], w00);
                if (in_x1) s = __fadd_rn(s, __fmul_rn(Fc[y0 * p.feat_w + x1], w01));
                if (in_y1) s = __fadd_rn(s, __fmul_rn(Fc[y1 * p.feat_w + x0], w10));
                if (in_x1 && in_y1) s = __fadd_rn(s, __fmul_rn(Fc[y1 * p.feat_w + x1], w11));
                float* o = bev + static_cast<size_t>(c) * ncell + cell;
                *o = __fadd_rn(*o, s);
            }
            ++n;
        }
    }
    if (n > 1) {
        const float nf = static_cast<float>(n);
        for (int c = 0; c < p.channels; ++c) {
            float* o = bev + static_cast<size_t>(c) * ncell + cell;
            *o = __fdiv_rn(*o, nf);
        }
    }
}

struct FusionPtrs {
    const float* feat[EF_MAX_MODALITIES];
    const float* pw[EF_MAX_MODALITIES];
    const float* pb[EF_MAX_MODALITIES];
};

bool valid_fusion(const EfGatedFusionParams* p) {
    if (!p || p->nx <= 0 || p->ny <= 0 || p->num_modalities < 1 || p->num_modalities > EF_MAX_MODALITIES ||
        p->out_channels <= 0 || p->gate_kernel < 1 || p->gate_kernel % 2 == 0)
        return false;
    for (int m = 0; m < p->num_modalities; ++m)
        if (p->channels[m] <= 0) return false;
    return static_cast<long long>(p->nx) * p->ny * p->out_channels < (1LL << 31);
}

__global__ void gates(EfGatedFusionParams p, FusionPtrs ptr, const float* __restrict__ valid,
                      const float* __restrict__ gw, const float* __restrict__ gb, float* __restrict__ g) {
    const int ncell = p.nx * p.ny;
    const int cell = blockIdx.x * blockDim.x + threadIdx.x;
    if (cell >= ncell) return;
    const int iy = cell / p.nx, ix = cell - iy * p.nx;
    const int M = p.num_modalities, k = p.gate_kernel, r = k / 2;
    int ctot = 0;
    for (int m = 0; m < M; ++m) ctot += p.channels[m];
    float sum = 0.f;
    for (int mo = 0; mo < M; ++mo) {
        float acc = gb[mo];
        int ci = 0;
        for (int m = 0; m < M; ++m) {
            const float vm = valid[m];
            for (int c = 0; c < p.channels[m]; ++c, ++ci) {
                const float* F = ptr.feat[m] + static_cast<size_t>(c) * ncell;
                const float* W = gw + (static_cast<size_t>(mo) * ctot + ci) * k * k;
                for (int dy = 0; dy < k; ++dy) {
                    const int yy = iy + dy - r;
                    if (yy < 0 || yy >= p.ny) continue;
                    for (int dx = 0; dx < k; ++dx) {
                        const int xx = ix + dx - r;
                        if (xx < 0 || xx >= p.nx) continue;
                        acc += W[dy * k + dx] * (F[yy * p.nx + xx] * vm);
                    }
                }
            }
        }
        const float gm = (1.f / (1.f + expf(-acc)) + p.gate_eps) * valid[mo];
        g[static_cast<size_t>(mo) * ncell + cell] = gm;
        sum += gm;
    }
    const float denom = fmaxf(sum, 1e-6f);
    for (int mo = 0; mo < M; ++mo) g[static_cast<size_t>(mo) * ncell + cell] /= denom;
}

__global__ void combine(EfGatedFusionParams p, FusionPtrs ptr, const float* __restrict__ g,
                        float* __restrict__ out) {
    const int ncell = p.nx * p.ny;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;  // k = o * ncell + cell
    if (k >= ncell * p.out_channels) return;
    const int o = k / ncell, cell = k - o * ncell;
    float res = 0.f;
    for (int m = 0; m < p.num_modalities; ++m) {
        const float gm = g[static_cast<size_t>(m) * ncell + cell];
        const int C = p.channels[m];
        const float* W = ptr.pw[m] + static_cast<size_t>(o) * C;
        const float* F = ptr.feat[m] + cell;
        float acc = ptr.pb[m][o];
        for (int c = 0; c < C; ++c) acc += W[c] * F[static_cast<size_t>(c) * ncell];
        res += gm * fmaxf(acc, 0.f);
    }
    out[k] = res;
}

}  // namespace

extern "C" EF_API int ef_camera_lift(const EfCameraLiftParams* params, const float* features,
                                     const float* projection, const float* camera_valid, float* bev,
                                     cudaStream_t stream) {
    if (!params || !bev) return EF_ERR_NULL_POINTER;
    if (!valid_lift(params)) return EF_ERR_BAD_PARAM;
    if (params->num_cameras > 0 && (!features || !projection || !camera_valid)) return EF_ERR_NULL_POINTER;
    const int ncell = params->nx * params->ny;
    lift<<<(ncell + kThreads - 1) / kThreads, kThreads, 0, stream>>>(*params, features, projection, camera_valid,
                                                                     bev);
    return cudaGetLastError() == cudaSuccess ? EF_OK : EF_ERR_CUDA;
}

extern "C" EF_API size_t ef_gated_fusion_workspace_size(const EfGatedFusionParams* params) {
    if (!valid_fusion(params)) return 0;
    return static_cast<size_t>(params->num_modalities) * params->nx * params->ny * sizeof(float);
}

extern "C" EF_API int ef_gated_fusion(const EfGatedFusionParams* params, const float* const* features,
                                      const float* valid, const float* const* proj_weight,
                                      const float* const* proj_bias, const float* gate_weight,
                                      const float* gate_bias, float* out, void* workspace, size_t workspace_size,
                                      cudaStream_t stream) {
    if (!params || !features || !valid || !proj_weight || !proj_bias || !gate_weight || !gate_bias || !out ||
        !workspace)
        return EF_ERR_NULL_POINTER;
    if (!valid_fusion(params)) return EF_ERR_BAD_PARAM;
    if (workspace_size < ef_gated_fusion_workspace_size(params)) return EF_ERR_WORKSPACE;
    FusionPtrs ptr{};
    for (int m = 0; m < params->num_modalities; ++m) {
        if (!features[m] || !proj_weight[m] || !proj_bias[m]) return EF_ERR_NULL_POINTER;
        ptr.feat[m] = features[m];
        ptr.pw[m] = proj_weight[m];
        ptr.pb[m] = proj_bias[m];
    }
    const int ncell = params->nx * params->ny;
    float* g = static_cast<float*>(workspace);
    gates<<<(ncell + kThreads - 1) / kThreads, kThreads, 0, stream>>>(*params, ptr, valid, gate_weight, gate_bias,
                                                                      g);
    const int total = ncell * params->out_channels;
    combine<<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(*params, ptr, g, out);
    return cudaGetLastError() == cudaSuccess ? EF_OK : EF_ERR_CUDA;
}
