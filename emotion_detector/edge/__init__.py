"""Edge mode (DESIGN.md §2 "Edge", "Forwarder", "Dashboard"): a device analyses its camera and publishes events
over MQTT; a forwarder stores them in the database; the web app's /dashboard shows them."""
