"A tiny loopback STAC API + COG file server with HTTP Range support, for tests and benchmarks (no internet)."
from __future__ import annotations
import json, re, threading, datetime as dt
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlparse, parse_qs
import rasterio
from rasterio.warp import transform_bounds

CONFORMS = ['https://api.stacspec.org/v1.0.0/core', 'https://api.stacspec.org/v1.0.0/item-search']
BAND_META = {'red': 'Red', 'green': 'Green', 'blue': 'Blue', 'nir': 'NIR'}

class StacServer:
    """Serve a STAC API (landing page, /search) and files under /files/ on 127.0.0.1, with byte counting.
    `token`: file requests without `?token=<token>` get 403. `drop_after`: after this many body bytes of a file
    have been served, file requests send headers then close the connection mid-body (a network failure)."""
    max_body = 1<<20   # bounded: POST bodies over 1 MB are refused
    timeout = 10       # bounded: idle sockets are closed after 10 s

    def __init__(self, token=None, drop_after=None):
        self.files, self.items, self.token, self.drop_after = {}, [], token, drop_after
        self.requests, self.file_bytes, self.lock = [], {}, threading.Lock()
        srv = self
        class H(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            timeout = srv.timeout
            def log_message(self, *a): pass
            def do_HEAD(self): srv._handle(self, head=True)
            def do_GET(self): srv._handle(self)
            def do_POST(self): srv._handle(self, post=True)
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *a): self.httpd.shutdown(); self.httpd.server_close(); self.thread.join(5)

    @property
    def bytes_served(self): return sum(self.file_bytes.values())

    def add_file(self, path, name=None):
        "Serve the local file `path` at /files/<name>; return its URL."
        name = name or Path(path).name
        self.files[name] = Path(path)
        return f'{self.url}/files/{name}'

    def add_item(self, path, id, datetime, collection='naip', asset='image', bands=('red','green','blue','nir'), **props):
        "Serve the COG `path` and list it as a STAC item (bbox, geometry, gsd, proj and eo metadata from the file)."
        href = self.add_file(path, f'{id}.tif')
        with rasterio.open(path) as src:
            w, s, e, n = transform_bounds(src.crs, 'EPSG:4326', *src.bounds, densify_pts=21)
            gsd, epsg, shape, tr = src.res[0], src.crs.to_epsg(), [src.height, src.width], list(src.transform)[:6]
        geom = dict(type='Polygon', coordinates=[[[w, s], [e, s], [e, n], [w, n], [w, s]]])
        self.items.append(dict(type='Feature', stac_version='1.0.0', id=id, collection=collection, bbox=[w, s, e, n],
            geometry=geom, links=[],
            properties=dict(datetime=datetime, gsd=gsd, **{'proj:epsg': epsg, 'proj:shape': shape, 'proj:transform': tr}, **props),
            assets={asset: dict(href=href, type='image/tiff; application=geotiff; profile=cloud-optimized', roles=['data'],
                                **{'eo:bands': [dict(name=BAND_META.get(b, b), common_name=b) for b in bands]})},
            stac_extensions=[]))
        return href

    # --- request handling ---
    def _landing(self):
        u = self.url
        return dict(type='Catalog', id='loopback', stac_version='1.0.0', description='Loopback STAC API for tests',
                    conformsTo=CONFORMS, links=[dict(rel='self', href=f'{u}/', type='application/json'),
                    dict(rel='root', href=f'{u}/', type='application/json'),
                    dict(rel='search', href=f'{u}/search', type='application/geo+json', method='GET'),
                    dict(rel='search', href=f'{u}/search', type='application/geo+json', method='POST')])

    def _search(self, q):
        bbox, cols, when = q.get('bbox'), q.get('collections'), q.get('datetime')
        if isinstance(bbox, str): bbox = [float(v) for v in bbox.split(',')]
        if isinstance(cols, str): cols = cols.split(',')
        def keep(it):
            if cols and it['collection'] not in cols: return False
            if bbox:
                w, s, e, n = it['bbox']
                if w > bbox[2] or e < bbox[0] or s > bbox[3] or n < bbox[1]: return False
            if when:
                a, b = (when.split('/') + [when])[:2]
                d = it['properties']['datetime']
                if (a not in ('', '..') and d < a) or (b not in ('', '..') and d > b): return False
            return True
        feats = [it for it in self.items if keep(it)]
        return dict(type='FeatureCollection', features=feats, links=[], numberReturned=len(feats))

    def _send_json(self, h, obj, code=200, head=False):
        body = json.dumps(obj).encode()
        h.send_response(code); h.send_header('Content-Type', 'application/json')
        h.send_header('Content-Length', str(len(body))); h.end_headers()
        if not head: h.wfile.write(body)

    def _handle(self, h, head=False, post=False):
        u = urlparse(h.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self.lock: self.requests.append(dict(method=h.command, path=u.path, query=u.query, range=h.headers.get('Range')))
        if post:
            n = int(h.headers.get('Content-Length') or 0)
            if n > self.max_body: return self._send_json(h, dict(error='body too large'), 413)
            q = json.loads(h.rfile.read(n) or b'{}')
        if u.path in ('', '/'): return self._send_json(h, self._landing(), head=head)
        if u.path == '/search': return self._send_json(h, self._search(q), head=head)
        m = re.fullmatch(r'/files/(.+)', u.path)
        if not m or m[1] not in self.files: return self._send_json(h, dict(error='not found'), 404, head)
        if self.token is not None and q.get('token') != self.token:
            return self._send_json(h, dict(error='unsigned URL: token missing or wrong'), 403, head)
        self._file(h, m[1], head)

    def _file(self, h, name, head):
        path = self.files[name]
        size, rng = path.stat().st_size, h.headers.get('Range')
        a, b, code = 0, size-1, 200
        if rng:
            m = re.fullmatch(r'bytes=(\d*)-(\d*)', rng.strip())
            if not m: return self._send_json(h, dict(error=f'unsupported range {rng}'), 416, head)
            a = int(m[1]) if m[1] else size-int(m[2])
            b = min(int(m[2]), size-1) if m[1] and m[2] else size-1
            if a >= size: return self._send_json(h, dict(error='range not satisfiable'), 416, head)
            code = 206
        with open(path, 'rb') as f: f.seek(a); body = f.read(b+1-a)   # only the bytes asked for
        h.send_response(code)
        h.send_header('Content-Type', 'image/tiff'); h.send_header('Accept-Ranges', 'bytes')
        h.send_header('Content-Length', str(len(body)))
        if code == 206: h.send_header('Content-Range', f'bytes {a}-{b}/{size}')
        h.end_headers()
        if head: return
        with self.lock:
            sent = self.file_bytes.get(name, 0)
            drop = self.drop_after is not None and sent + len(body) > self.drop_after
            n = len(body)//2 if drop else len(body)
            self.file_bytes[name] = sent + n
        h.wfile.write(body[:n])
        if drop:  # a network failure mid-read: half the body, then the connection goes away
            h.wfile.flush(); h.close_connection = True
            try: h.connection.shutdown(2)
            except OSError: pass
