"""The Streamlit dashboard (entry: app/main.py). See app/README.md."""
