"""File names that are fingerprinted (a bundler's content hash) and names that are not."""

# Checked against the app (test_serving.py) and the rendered Caddyfile (test_caddy.py).
FINGERPRINTS = {
    "app.3f2a9c1b.js": True,  # webpack, Parcel
    "main.8f14e45f.chunk.css": True,  # create-react-app
    "main.a1b2c3d4e5f60718293a.js": True,  # webpack's full contenthash
    "index-DiwrgTda.css": True,  # Vite, Rollup: no digit needed
    "index-C-ZvV9Jy.js": True,
    "app-5KLWJ4BX.js": True,  # esbuild
    "app.3f2a9c1b.js.map": True,
    "privacy-policy2024.html": False,
    "report-2024final.pdf": False,
    "index-DiwrgTda.html": False,  # HTML names the assets: always revalidated
    "page.3f2a9c1b.htm": False,
    "photo-20240101.jpg": False,
    "logo-original.png": False,
    "jquery-3.7.1.min.js": False,
    "OpenSans-Regular.ttf": False,
    "app.deadbeef.js": False,
    "app.00000000.js": False,
    "report-FINAL-v2.pdf": False,
}
