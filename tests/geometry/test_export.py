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


# ----------------------------------------------------------------------------------------------
# readers that share no code with the writers (plyfile/trimesh): Open3D (C++) and pygltflib
# ----------------------------------------------------------------------------------------------
def test_open3d_reads_the_ply_point_cloud(tmp_path, cloud):
    o3d = pytest.importorskip("open3d")
    path = write_ply(tmp_path / "points.ply", cloud)
    loaded = o3d.io.read_point_cloud(str(path))
    assert loaded.has_normals() and loaded.has_colors()
    assert np.array_equal(np.asarray(loaded.points), cloud.points.astype(np.float64))
    assert np.array_equal(np.rint(np.asarray(loaded.colors) * 255).astype(np.uint8), cloud.colors)
    assert np.array_equal(np.asarray(loaded.normals), cloud.normals.astype(np.float64))


def test_open3d_reads_the_ply_and_glb_meshes(tmp_path, camera, scene_depth, rng):
    o3d = pytest.importorskip("open3d")
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    mesh = depth_to_mesh(scene_depth, camera, rgb=rgb)
    ply = o3d.io.read_triangle_mesh(str(write_ply(tmp_path / "mesh.ply", mesh)))
    assert np.array_equal(np.asarray(ply.triangles), mesh.faces)
    assert np.array_equal(np.asarray(ply.vertices), mesh.vertices.astype(np.float64))
    glb = o3d.io.read_triangle_mesh(str(write_glb(tmp_path / "mesh.glb", mesh)))
    assert len(glb.triangles) == len(mesh.faces) and glb.has_vertex_colors()
    # every triangle comes back with the same corners, flipped to OpenGL axes (y up, z backward)
    flipped = mesh.vertices @ OPENCV_TO_OPENGL[:3, :3].T
    ours = np.sort(np.sort(flipped[mesh.faces].reshape(len(mesh.faces), -1), axis=1), axis=0)
    vertices = np.asarray(glb.vertices)[np.asarray(glb.triangles)]
    theirs = np.sort(np.sort(vertices.reshape(len(vertices), -1), axis=1), axis=0)
    assert np.allclose(ours, theirs, atol=1e-6)
    colours = np.rint(np.asarray(glb.vertex_colors) * 255).astype(np.uint8)
    assert set(map(tuple, colours)) <= set(map(tuple, rgb.reshape(-1, 3)))


def test_pygltflib_reads_the_glb_point_cloud(tmp_path, cloud):
    pygltflib = pytest.importorskip("pygltflib")
    path = write_glb(tmp_path / "points.glb", cloud)
    gltf = pygltflib.GLTF2().load(str(path))
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.mode == pygltflib.POINTS
    blob = gltf.binary_blob()

    def accessor(index, dtype, width):
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        start = view.byteOffset + acc.byteOffset
        return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)

    positions = accessor(primitive.attributes.POSITION, "<f4", 3)
    assert gltf.accessors[primitive.attributes.POSITION].componentType == pygltflib.FLOAT
    matrix = gltf.nodes[gltf.scenes[gltf.scene or 0].nodes[0]].matrix
    assert matrix is None  # the OpenGL flip is applied to the points, not hidden in a node
    assert np.allclose(positions, cloud.points @ OPENCV_TO_OPENGL[:3, :3].T, atol=1e-6)
    colours = accessor(primitive.attributes.COLOR_0, "u1", 4)
    assert np.array_equal(colours[:, :3], cloud.colors) and (colours[:, 3] == 255).all()
