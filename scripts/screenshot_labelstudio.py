"""Screenshot of Label Studio's labeling screen for one task (headless Debian chromium + selenium).

Usage: python scripts/screenshot_labelstudio.py URL EMAIL PASSWORD PROJECT_ID TASK_ID OUT.png
Needs `apt-get install chromium chromium-driver` and `pip install selenium` (kept out of our deps:
only the docs use it).
"""

import sys
import time

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait


def main(url: str, email: str, password: str, project: str, task: str, out: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(f"{url}/user/login/")
        wait.until(ready.presence_of_element_located((By.NAME, "email"))).send_keys(email)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{url}/projects/{project}/data?task={task}")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".seg-text")))
        time.sleep(5)  # let the predictions and the choices panel render
        driver.save_screenshot(out)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:7])
