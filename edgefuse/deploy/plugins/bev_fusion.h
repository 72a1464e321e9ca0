/* Stage 3: the BEV fusion op = camera → BEV lifting (3a) + gated fusion of the modality BEV maps (3b).
 * The math is the one of the torch model (edgefuse/model/encoders.py CameraLift and
 * edgefuse/model/fusion.py GatedFusion, BatchNorm folded into the 1×1 projections); docs/kernels.md.
 *
 * 3a ef_camera_lift: features (Ncam, C, Hf, Wf) float32, projection (Ncam, 3, 4) float32 (base_link →
 * pixels of the Hi × Wi network input image), camera_valid (Ncam,) float32 (≠ 0: the camera delivered this
 * frame; float, not uint8, because TensorRT plugins take no uint8 tensors)  →  bev (C, ny, nx) float32.
 * For BEV cell (iy, ix) with centre x = origin_x + (ix + 0.5)·cell, y = origin_y + (iy + 0.5)·cell and each
 * height z: (u', v', d) = P·(x, y, z, 1); the sample is valid when the camera is valid, d > min_depth and
 * u = u'/d ∈ [0, Wi − 1], v = v'/d ∈ [0, Hi − 1]; its value is the bilinear sample of the feature map at
 * feature pixel ((u + 0.5)·Wf/Wi − 0.5, (v + 0.5)·Hf/Hi − 0.5) clamped to the map (torch grid_sample,
 * align_corners=False, border padding). Output: the mean over valid (camera, height) samples, 0 if none.
 *
 * 3b ef_gated_fusion: M modality maps features[m] (C_m, ny, nx), valid (M,) float (device; 1 = present),
 * per-modality 1×1 projections proj_weight[m] (Cout, C_m) + proj_bias[m] (Cout,) followed by ReLU, and the
 * gate conv gate_weight (M, ΣC_m, k, k) + gate_bias (M,) (zero padding k/2) over the concatenation of
 * valid[m]·features[m]:
 *   g_m = (sigmoid(gate_m) + gate_eps) · valid[m];   g_m /= max(Σ_m g_m, 1e-6)
 *   out (Cout, ny, nx) = Σ_m g_m · ReLU(proj_m(features[m]))
 * A missing modality (valid 0) has gate exactly 0. `features`, `proj_weight`, `proj_bias` are HOST arrays
 * of M device pointers. Workspace: the gates, M·ny·nx floats.
 */
#ifndef EF_BEV_FUSION_H
#define EF_BEV_FUSION_H

#include "ef_common.h"

#ifdef __cplusplus
extern "C" {
#endif

EF_API int ef_camera_lift(const EfCameraLiftParams* params, const float* features, const float* projection,
                          const float* camera_valid, float* bev, cudaStream_t stream);

/* Bytes of workspace ef_gated_fusion needs (0 on bad params). */
EF_API size_t ef_gated_fusion_workspace_size(const EfGatedFusionParams* params);

EF_API int ef_gated_fusion(const EfGatedFusionParams* params, const float* const* features, const float* valid,
                           const float* const* proj_weight, const float* const* proj_bias,
                           const float* gate_weight, const float* gate_bias, float* out, void* workspace,
                           size_t workspace_size, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
