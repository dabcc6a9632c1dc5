import json
import struct

import numpy as np
import plyfile
import pytest
import trimesh

from depthlab.geometry import OPENCV_TO_OPENGL, depth_to_mesh, unproject, write_glb, write_ply
from depthlab.geometry.export import read_ply


@pytest.fixture
def cloud(camera, scene_depth, rng):
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    return unproject(scene_depth, camera, rgb=rgb, normals=True)


def test_ply_has_the_3dgs_fields(tmp_path, cloud):
    path = write_ply(tmp_path / "points.ply", cloud)
    ply = plyfile.PlyData.read(str(path))
    assert not ply.text and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"]
    assert [vertex.data.dtype[n].str for n in ("x", "nx", "red")] == ["<f4", "<f4", "|u1"]
    # what 3D Gaussian Splatting's fetchPly does
    positions = np.vstack([vertex["x"], vertex["y"], vertex["z"]]).T
    colors = np.vstack([vertex["red"], vertex["green"], vertex["blue"]]).T / 255.0
    normals = np.vstack([vertex["nx"], vertex["ny"], vertex["nz"]]).T
    assert np.array_equal(positions, cloud.points)
    assert np.allclose(colors * 255, cloud.colors) and np.allclose(normals, cloud.normals)
    assert len(read_ply(path)) == len(cloud)
    # trimesh reads it too
    loaded = trimesh.load(path)
    assert np.allclose(loaded.vertices, cloud.points)


def test_ply_is_not_overwritten(tmp_path, cloud):
    path = write_ply(tmp_path / "points.ply", cloud)
    with pytest.raises(FileExistsError, match="points.ply"):
        write_ply(path, cloud)
    write_ply(path, cloud.select(slice(0, 5)), overwrite=True)
    assert plyfile.PlyData.read(str(path))["vertex"].count == 5
    assert [p.name for p in tmp_path.iterdir()] == ["points.ply"]  # no temporary file left behind


def test_ply_mesh(tmp_path, camera, scene_depth):
    mesh = depth_to_mesh(scene_depth, camera)
    ply = plyfile.PlyData.read(str(write_ply(tmp_path / "mesh.ply", mesh)))
    assert ply["face"].count == len(mesh.faces)
    assert np.array_equal(np.vstack(ply["face"]["vertex_indices"]), mesh.faces)


def _glb_json(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    chunk_length, chunk_type = struct.unpack("<I4s", data[12:20])
    assert magic == b"glTF" and version == 2 and length == len(data) and chunk_type == b"JSON"
    return json.loads(data[20 : 20 + chunk_length])


def test_glb_point_cloud_is_flipped_to_opengl(tmp_path, cloud):
    path = write_glb(tmp_path / "points.glb", cloud)
    gltf = _glb_json(path)
    assert gltf["meshes"][0]["primitives"][0]["mode"] == 0  # POINTS
    scene = trimesh.load(path)
    geometry = next(iter(scene.geometry.values()))
    points = trimesh.transform_points(geometry.vertices, scene.graph[scene.graph.nodes_geometry[0]][0])
    assert np.allclose(points, cloud.points @ OPENCV_TO_OPENGL[:3, :3].T, atol=1e-6)
    assert np.array_equal(np.asarray(geometry.colors)[:, :3], cloud.colors)


def test_glb_mesh(tmp_path, camera, scene_depth):
    mesh = depth_to_mesh(scene_depth, camera, rgb=np.full((48, 64, 3), 90, np.uint8))
    path = write_glb(tmp_path / "mesh.glb", mesh)
    assert _glb_json(path)["meshes"][0]["primitives"][0].get("mode", 4) == 4  # TRIANGLES
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(np.sort(loaded.vertices[:, 2]), np.sort(-mesh.vertices[:, 2]), atol=1e-6)
    with pytest.raises(FileExistsError):
        write_glb(path, mesh)
    with pytest.raises(TypeError, match="PointCloud or a Mesh"):
        write_glb(tmp_path / "x.glb", np.zeros((3, 3)))
