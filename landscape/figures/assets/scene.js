(function () {
  var cfg = JSON.parse(document.getElementById('landscape-scene').textContent);
  var state = window.landscapeScene = {ready: false, renderers: 0, linkedCameras: false,
                                       meshes: 0, axes: 0};
  var start = Date.now();
  function fit(rw, renderers) {
    // the camera distance at which the scene fills the narrower side of a panel
    var cam = renderers[0].getActiveCamera(), c = cfg.fit.center;
    var pos = cam.getPosition(), dir = [pos[0] - c[0], pos[1] - c[1], pos[2] - c[2]];
    var len = Math.hypot(dir[0], dir[1], dir[2]) || 1;
    var size = rw.getViews()[0].getSize(), vp = renderers[0].getViewport();
    var aspect = (size[0] * (vp[2] - vp[0])) / Math.max(1, size[1] * (vp[3] - vp[1]));
    var v = cam.getViewAngle() * Math.PI / 180;
    var angle = Math.min(v, 2 * Math.atan(Math.tan(v / 2) * aspect));
    // 1.12: room for the axis titles and tick labels, which lie outside the bounds
    var d = 1.12 * cfg.fit.radius / Math.sin(angle / 2) / cfg.fit.zoom;
    cam.setFocalPoint(c[0], c[1], c[2]);
    cam.setPosition(c[0] + dir[0] / len * d, c[1] + dir[1] / len * d, c[2] + dir[2] / len * d);
    renderers.forEach(function (r) { r.resetCameraClippingRange(); });
  }
  function step() {
    var rw = window.global && window.global.renderWindow;
    if (rw) {
      var renderers = rw.getRenderers(), axes = [], meshes = 0;
      renderers.forEach(function (r) {
        r.getActors().forEach(function (a) {
          if (a.getClassName() === 'vtkCubeAxesActor') { axes.push(a); return; }
          var m = a.getMapper && a.getMapper(), d = m && m.getInputData();
          if (d && d.getNumberOfPoints() > 0) { meshes += 1; }
        });
      });
      if (axes.length >= cfg.panels && meshes >= cfg.meshes) {
        var zt = cfg.z_ticks.map(function (t) { return t[0]; });
        var zs = cfg.z_ticks.map(function (t) { return t[1]; });
        axes.forEach(function (a) {
          var base = a.getGenerateTicks();
          a.setGenerateTicks(function (b) {
            var t = base(b);
            t.ticks[2] = zt; t.tickStrings[2] = zs;
            return t;
          });
          // the height's name sits at a panel's edge, where vtk.js cuts it: the page has it
          var names = a.getAxisLabels();
          a.setAxisLabels([names[0], names[1], '']);
          var b = a.getDataBounds().slice();
          b[5] += 1e-9 * (Math.abs(b[5]) + 1);  // new bounds: the axes redraw their ticks
          a.setDataBounds(b);
        });
        fit(rw, renderers.filter(function (r) { return r.getActors().length > 0; }));
        rw.render();
        var drawn = renderers.filter(function (r) { return r.getActors().length > 0; });
        var cam = drawn[0].getActiveCamera();
        state.renderers = drawn.length;
        state.linkedCameras = drawn.every(function (r) { return r.getActiveCamera() === cam; });
        state.meshes = meshes; state.axes = axes.length; state.ready = true;
        return;
      }
    }
    if (Date.now() - start > 60000) {
      console.error('landscape: the 3-D scene did not load within 60 s');
      return;
    }
    setTimeout(step, 50);
  }
  window.addEventListener('load', function () { setTimeout(step, 0); });
})();
