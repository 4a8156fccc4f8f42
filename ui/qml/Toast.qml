// A message for the user that slides in at the top and goes away by itself.
import QtQuick 2.15
import "."

Rectangle {
    id: root
    property alias text: label.text
    width: Math.min(parent ? parent.width - 40 : 400, label.implicitWidth + 40)
    height: label.implicitHeight + 20
    radius: 8
    color: "#E6333333"
    opacity: 0
    visible: opacity > 0
    z: 100

    function show(message) {
        label.text = message
        opacity = 1
        hide.restart()
    }

    Text {
        id: label
        anchors.centerIn: parent
        width: Math.min(implicitWidth, (root.parent ? root.parent.width - 80 : 360))
        wrapMode: Text.Wrap
        color: "white"
        font.pixelSize: Theme.fontNormal
    }
    Timer { id: hide; interval: 5000; onTriggered: root.opacity = 0 }
    Behavior on opacity { NumberAnimation { duration: 200 } }
    MouseArea { anchors.fill: parent; onClicked: root.opacity = 0 }
}
