/* Stage 1: pillar voxelization of a point cloud (run before the engine).
 *
 * Rule (identical to edgefuse.tensors.PillarVoxelizer, the CPU path): a point is kept when
 * lo[a] <= p[a] < hi[a] for x, y, z (so non-finite coordinates are dropped); its cell is
 * ix = min((int)((x - lo_x) / dx), nx - 1), iy likewise, in float32 arithmetic.
 * Pillars are ordered by their total point count descending, ties by the linear index iy*nx + ix
 * ascending; the first max_pillars are kept. Inside a pillar points keep their input order and the first
 * max_points are kept.
 *
 * Outputs (device, fully written — no need to clear them):
 *   out_points (P, N, F) float32, rows beyond counts[p] are 0;
 *   out_coords (P, 2) int32 (iy, ix), rows beyond num_pillars are 0;
 *   out_counts (P,) int32 points kept per pillar;
 *   out_num_pillars (1,) int32 pillars kept.
 * Input points (n, F) float32, n ≤ the max_input_points the workspace was sized for.
 */
#ifndef EF_PILLAR_VOXELIZE_H
#define EF_PILLAR_VOXELIZE_H

#include "ef_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of workspace ef_pillar_voxelize needs for up to max_input_points points (0 on bad params). */
EF_API size_t ef_pillar_voxelize_workspace_size(const EfVoxelizeParams* params, int max_input_points);

EF_API int ef_pillar_voxelize(const EfVoxelizeParams* params, const float* points, int n,
                              float* out_points, int* out_coords, int* out_counts, int* out_num_pillars,
                              void* workspace, size_t workspace_size, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
