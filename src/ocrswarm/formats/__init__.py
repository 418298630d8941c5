"""The workspace layer: METS, PAGE-XML, OCRD-ZIP, images and exports. Imports nothing above it."""
