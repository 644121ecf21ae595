"""`charrnn export`: a trained model as a static folder that samples in the browser.

    weights.py  the weights as bytes: fp32, fp16 or int8 with per-row scales, and the
                same numbers back (what the JS runtime computes), for the quality check
    pack.py     bytes in a classic script (15 bits per UTF-16 unit) and the manifest
    folder.py   the folder: page, runtime, views, model.js; refusals; the report

The runtime and the page themselves are in charrnn/web/.
"""
